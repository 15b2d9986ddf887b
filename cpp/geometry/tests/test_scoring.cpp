// Never-visible fallback, object score, numpy's f32 sum and the evaluation blur (spec §6, §8).
#include <cmath>
#include <cstdint>
#include <vector>

#include "align3d/geometry.hpp"
#include "check.hpp"

namespace {

// Two views, six points; seen = 0 1 0 0 1 0. Point 0 takes 1 (no donor below), point 2 takes 1
// (1 away vs 2), point 3 takes 4 (2 away vs 1), point 5 takes 4 (no donor above).
void fallback() {
  std::vector<std::uint8_t> vis = {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
  align3d::apply_visibility_fallback(vis.data(), 2, 6);
  CHECK((vis == std::vector<std::uint8_t>{1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1}));
  // Equal distance on both sides: the lower index.
  std::vector<std::uint8_t> tie = {1, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  align3d::apply_visibility_fallback(tie.data(), 2, 5);
  CHECK((tie == std::vector<std::uint8_t>{1, 1, 1, 0, 0, 0, 0, 0, 1, 1}));
  std::vector<std::uint8_t> none = {0, 0, 0, 0};
  align3d::apply_visibility_fallback(none.data(), 2, 2);
  CHECK((none == std::vector<std::uint8_t>{0, 0, 0, 0}));
  std::vector<std::uint8_t> all = {1, 0, 0, 1};
  align3d::apply_visibility_fallback(all.data(), 2, 2);
  CHECK((all == std::vector<std::uint8_t>{1, 0, 0, 1}));
}

void sums() {
  const float g[9] = {0.1f, 0.7f, 1e-4f, 0.33f, 0.9f, 0.05f, 0.61f, 0.2f, 0.45f};
  const float expected9 = (((g[0] + g[1]) + (g[2] + g[3])) + ((g[4] + g[5]) + (g[6] + g[7]))) + g[8];
  CHECK(align3d::numpy_sum_f32(g, 9) == expected9);
  CHECK(align3d::numpy_sum_f32(g, 5) == (((g[0] + g[1]) + g[2]) + g[3]) + g[4]);
  CHECK(align3d::numpy_sum_f32(g, 0) == 0.0f);
  std::vector<float> many(1000, 0.001f);
  CHECK(std::fabs(align3d::numpy_sum_f32(many.data(), many.size()) - 1.0f) < 1e-5f);
}

void object_scores() {
  // Every view: render 0.25, aligned 0.75, w = 0.5 -> 0.5; peak fused 0.875 -> 1.375 exactly.
  std::vector<float> probs;
  for (int v = 0; v < 9; ++v) probs.insert(probs.end(), {0.25f, 0.75f});
  const std::vector<float> scores = {0.1f, 0.2f, 0.5f, 0.0f, 0.0f, 0.875f, 0.3f, 0.3f, 0.125f};
  CHECK(align3d::object_score(scores.data(), 3, probs.data(), 9, 0.5) == 1.375);
  CHECK(align3d::object_score(scores.data(), 0, probs.data(), 9, 0.5) == 0.5);  // no points: peak 0
  // w = 0.3: g = f32(f32(0.3)*0.75) + f32(f32(0.7)*0.25) in f32, mean over 3 views in f32.
  const float gv = static_cast<float>(0.3) * 0.75f + static_cast<float>(1.0 - 0.3) * 0.25f;
  const float mean = ((gv + gv) + gv) / 3.0f;
  CHECK(align3d::object_score(scores.data(), 3, probs.data(), 3, 0.3) == 0.875 + static_cast<double>(mean));
  const std::vector<float> fused = align3d::fuse_global_probs(probs.data(), 2, 0.3);
  CHECK(fused.size() == 2 && fused[0] == gv);
  CHECK_THROWS(align3d::object_score(scores.data(), 3, probs.data(), 0, 0.5), "at least one view");
}

void grid_and_blur() {
  const std::vector<float> values = {0.5f, 2.0f};
  const std::vector<std::int64_t> index = {0, 5};
  const std::vector<float> grid = align3d::points_to_grid(values.data(), index.data(), 2, 2, 3);
  CHECK((grid == std::vector<float>{0.5f, 0, 0, 0, 0, 2.0f}));
  const std::vector<std::int64_t> bad = {6};
  CHECK_THROWS(align3d::points_to_grid(values.data(), bad.data(), 1, 2, 3), "grid_index outside [0, 5]");
  // A constant grid stays constant; an impulse keeps its mass (reflect mode loses nothing) and
  // spreads symmetrically; the kernel at distance 0 is 1 / sum exp(-x^2/32) for |x| <= 16.
  const int h = 40, w = 40;
  std::vector<float> flat(h * w, 0.25f);
  for (float v : align3d::blur_grid(flat.data(), h, w)) CHECK(std::fabs(v - 0.25f) < 1e-6f);
  std::vector<float> impulse(h * w, 0.0f);
  impulse[20 * w + 20] = 1.0f;
  const std::vector<float> b = align3d::blur_grid(impulse.data(), h, w);
  double mass = 0;
  for (float v : b) mass += v;
  CHECK(std::fabs(mass - 1.0) < 1e-5);
  CHECK(b[20 * w + 17] == b[20 * w + 23] && b[17 * w + 20] == b[23 * w + 20] && b[17 * w + 20] == b[20 * w + 17]);
  double k0 = 0;
  for (int x = -16; x <= 16; ++x) k0 += std::exp(-x * x / 32.0);
  CHECK(std::fabs(b[20 * w + 20] - 1.0 / (k0 * k0)) < 1e-7);
  CHECK(b[20 * w + 3] == 0.0f && b[20 * w + 4] > 0.0f);  // radius 16
}

}  // namespace

int main() {
  fallback();
  sums();
  object_scores();
  grid_and_blur();
  return check::finish("test_scoring");
}
