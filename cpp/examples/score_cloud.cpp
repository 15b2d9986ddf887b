// Embedding example: one Inspector (bundle verified, encoder compiled once), many score() calls.
//   align3d_example BUNDLE              -> scores a generated sphere of 4000 points
//   align3d_example BUNDLE CLOUD.npy    -> scores an (N,3) .npy (rows invalid per spec 4.1 dropped)
// and prints the object score of each round. Builds against an installed package (CMakeLists.txt).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "align3d/geometry.hpp"
#include "align3d/inspector.hpp"
#include "align3d/npy.hpp"

namespace {

std::vector<float> sphere_points() {  // a sphere of radius 5 cm, like a scanned part
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> points;
  for (int i = 0; i < 4000; ++i) {
    float p[3] = {normal(rng), normal(rng), normal(rng)};
    const float r = std::sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]);
    for (float c : p) points.push_back(0.05f * c / r);
  }
  return points;
}

std::vector<float> npy_points(const char* path) {
  std::size_t rows = 0;
  const std::vector<float> raw = align3d::read_npy_points(path, &rows);
  return align3d::drop_invalid_rows(raw.data(), rows).xyz;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: %s BUNDLE [CLOUD.npy]\n", argv[0]);
    return 2;
  }
  try {
    const align3d::Inspector inspector(argv[1]);  // load + verify + compile: once per process
    const std::vector<float> points = argc == 3 ? npy_points(argv[2]) : sphere_points();
    for (int round = 0; round < 2; ++round) {  // score() can be called again and again
      const align3d::ScoreResult r = inspector.score(points);
      std::printf("object_score %.6f max_point_score %.6f points %zu encode %.3fs\n", r.object_score,
                  r.max_point_score, r.point_scores.size() / 3, r.timings.encode);
    }
  } catch (const align3d::Error& err) {
    std::fprintf(stderr, "%s\n", err.what());
    return 2;
  } catch (const align3d::NpyError& err) {
    std::fprintf(stderr, "%s\n", err.what());
    return 2;
  }
  return 0;
}
