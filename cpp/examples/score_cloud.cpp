// Embedding example: one Inspector (bundle verified, encoder compiled once), many score() calls.
//   align3d_example BUNDLE [CAL]  -> scores a generated sphere of 4000 points, prints the object score
//                                    (with a calibration CAL also the decision and its regions, spec 13)
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "align3d/inspector.hpp"

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: %s BUNDLE [CALIBRATION]\n", argv[0]);
    return 2;
  }
  try {
    align3d::InspectorOptions options;
    if (argc == 3) options.calibration = argv[2];  // verified against the bundle; score() then decides
    const align3d::Inspector inspector(argv[1], options);  // load + verify + compile: once per process
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
      std::printf("object_score %.6f max_point_score %.6f points %zu encode %.3fs", r.object_score,
                  r.max_point_score, r.point_scores.size() / 3, r.timings.encode);
      if (r.decided)
        std::printf(" decision %s regions %zu", r.decision.name(), r.decision.regions.size());
      std::printf("\n");
    }
  } catch (const align3d::Error& err) {
    std::fprintf(stderr, "%s\n", err.what());
    return 2;
  }
  return 0;
}
