// Embedding example: one Inspector (bundle verified, encoder compiled once), many score() calls.
//   align3d_example BUNDLE   -> scores a generated sphere of 4000 points, prints the object score
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "align3d/inspector.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s BUNDLE\n", argv[0]);
    return 2;
  }
  try {
    const align3d::Inspector inspector(argv[1]);  // load + verify + compile: once per process
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    std::vector<float> points;
    for (int i = 0; i < 4000; ++i) {  // a sphere of radius 5 cm, like a scanned part
      float p[3] = {normal(rng), normal(rng), normal(rng)};
      const float r = std::sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]);
      for (float c : p) points.push_back(0.05f * c / r);
    }
    for (int round = 0; round < 2; ++round) {  // score() can be called again and again
      const align3d::ScoreResult r = inspector.score(points);
      std::printf("object_score %.6f max_point_score %.6f points %zu encode %.3fs\n", r.object_score,
                  r.max_point_score, r.point_scores.size() / 3, r.timings.encode);
    }
  } catch (const align3d::Error& err) {
    std::fprintf(stderr, "%s\n", err.what());
    return 2;
  }
  return 0;
}
