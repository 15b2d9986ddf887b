// align3d_geometry_bench: times the geometry stages on one cloud (after a warm-up run) and prints
// one JSON object: per-repeat seconds of render_views with all threads and with one thread, and of
// backproject with random maps. Usage: align3d_geometry_bench CLOUD.npy [REPEATS] [PRESET] [one-thread]
// ("one-thread": time only single-threaded renders, e.g. to compare CPU time with another renderer).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "align3d/geometry.hpp"
#include "align3d/npy.hpp"

namespace {

template <typename Fn>
std::vector<double> time_runs(int repeats, Fn fn) {
  fn();  // warm-up
  std::vector<double> out;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return out;
}

void print_list(const char* name, const std::vector<double>& v, bool last) {
  std::printf("  \"%s\": [", name);
  for (std::size_t i = 0; i < v.size(); ++i) std::printf("%s%.6f", i ? ", " : "", v[i]);
  std::printf("]%s\n", last ? "" : ",");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: align3d_geometry_bench CLOUD.npy [REPEATS] [PRESET]\n");
    return 2;
  }
  try {
    std::size_t n = 0;
    const std::vector<float> xyz = align3d::read_npy_points(argv[1], &n);
    const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
    align3d::RenderSettings st;
    if (argc > 3) st.preset = argv[3];
    align3d::RenderedViews r;
    const bool only_one = argc > 4 && std::string(argv[4]) == "one-thread";
    std::vector<double> all;
    if (!only_one) all = time_runs(repeats, [&]() { r = align3d::render_views(xyz.data(), n, st, 0); });
    const auto one = time_runs(repeats, [&]() { r = align3d::render_views(xyz.data(), n, st, 1); });
    std::mt19937 rng(0);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    std::vector<float> maps(static_cast<std::size_t>(r.views) * 2 * 24 * 24);
    for (float& m : maps) m = unit(rng);
    std::vector<double> bp;
    if (!only_one)
      bp = time_runs(repeats, [&]() {
        align3d::backproject(maps.data(), r.views, 24, r.pixels.data(), r.visible.data(), n, r.image_size, 0.5);
      });
    std::printf("{\n  \"points\": %zu,\n  \"views\": %d,\n", n, r.views);
    print_list("render_all_threads_s", all, false);
    print_list("render_one_thread_s", one, false);
    print_list("backproject_s", bp, true);
    std::printf("}\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return 0;
}
