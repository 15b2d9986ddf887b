// Embedding example: one Inspector (bundle verified, encoder compiled once), many score() calls.
//   align3d_example BUNDLE [CLOUD.npy] [CAL.json]
//     scores CLOUD.npy (an (N,3) .npy; rows invalid per spec 4.1 dropped) or, without it, a generated
//     sphere of 4000 points, and prints the object score of each round; with a calibration CAL also
//     the decision and its regions (spec 13). Builds against an installed package (CMakeLists.txt).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
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
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: %s BUNDLE [CLOUD.npy] [CALIBRATION.json]\n", argv[0]);
    return 2;
  }
  try {
    align3d::InspectorOptions options;
    std::string cloud;
    for (int i = 2; i < argc; ++i) {  // a .npy is the cloud, anything else the calibration
      const std::string arg = argv[i];
      if (arg.size() > 4 && arg.compare(arg.size() - 4, 4, ".npy") == 0) cloud = arg;
      else
        options.calibration = arg;  // verified against the bundle; score() then decides
    }
    const align3d::Inspector inspector(argv[1], options);  // load + verify + compile: once per process
    const std::vector<float> points = cloud.empty() ? sphere_points() : npy_points(cloud.c_str());
    for (int round = 0; round < 2; ++round) {  // score() can be called again and again
      const align3d::ScoreResult r = inspector.score(points);
      std::printf("object_score %.6f max_point_score %.6f points %zu encode %.3fs", r.object_score, r.max_point_score,
                  r.point_scores.size() / 3, r.timings.encode);
      if (r.decided) std::printf(" decision %s regions %zu", r.decision.name(), r.decision.regions.size());
      std::printf("\n");
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
