// Renderer and correspondences on tiny clouds with hand-checked pixels (spec §5, appendix A).
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "align3d/geometry.hpp"
#include "check.hpp"

using align3d::RenderedViews;
using align3d::RenderSettings;

namespace {

std::size_t at(const RenderedViews& r, int v, std::size_t i) { return static_cast<std::size_t>(v) * r.points + i; }

int pixel(const RenderedViews& r, int v, std::size_t i, int axis) { return r.pixels[2 * at(r, v, i) + axis]; }

std::uint8_t image(const RenderedViews& r, int v, int y, int x) {
  const std::size_t s = static_cast<std::size_t>(r.image_size);
  return r.images[((static_cast<std::size_t>(v) * s + y) * s + x) * 3];
}

void rotations() {
  const align3d::Mat3 flip = align3d::axis_rotation('x', 180.0);
  CHECK(flip[4] == -1.0 && flip[8] == -1.0 && flip[5] == -1.2246467991473532e-16 && flip[7] == 1.2246467991473532e-16);
  const std::vector<align3d::Mat3> r = align3d::view_rotations("mvtec9");
  CHECK(r.size() == 9);
  const align3d::Mat3 expected = {
      0.8660254037844387,  -6.123233995736765e-17, 0.49999999999999994, 0, -1, -1.2246467991473532e-16,
      0.49999999999999994, 1.0605752387249069e-16, -0.8660254037844387};
  CHECK(r[5] == expected);  // appendix A, bit for bit
  CHECK(align3d::view_rotations("paper9").size() == 9 && align3d::view_rotations("eyecandies9").size() == 9);
  CHECK_THROWS(align3d::view_rotations("nine"), "unknown view preset 'nine'");
  CHECK_THROWS(align3d::axis_rotation('w', 1.0), "unknown rotation axis");
}

void settings() {
  const RenderSettings base;
  const RenderSettings cable = align3d::settings_for_dataset(base, "mvtec3d", "cable_gland");
  CHECK(cable.point_size == 12 && cable.window == 1024 && cable.preset == "paper9");
  CHECK(align3d::settings_for_dataset(base, "synthetic", "other").point_size == 8);
  const RenderSettings real = align3d::settings_for_dataset(base, "real3d", "");
  CHECK(real.point_size == 12 && real.window == 1036);
  CHECK(align3d::settings_for_dataset(base, "eyecandies", "x").point_size == 10);
  RenderSettings odd = base;
  odd.point_size = 3;
  CHECK(align3d::settings_for_dataset(odd, "", "").point_size == 3);
  CHECK(align3d::settings_for_dataset(odd, "nope", "").point_size == 3);
  CHECK(align3d::is_known_dataset("real3d") && !align3d::is_known_dataset("nope"));
}

// Two points on the x axis: every paper9 view (rotations about x) keeps them at (+-1, 0, 0).
// f / dist = W / (2 * 0.7 * 2) = 1024 / 2.8 = 365.714..., so u = 511.5 -+ 365.714 -> x pixels
// floor(145.786 * 0.328125) = 47 and floor(877.214 * 0.328125) = 287; w = 511.5 -> y pixel 167.
// Splat 2.625 px centred at (u + 0.5) * scale = 48.0 / 288.0 and 168.0 covers x 47..48 / 287..288,
// y 167..168. A lone splat has no same-surface neighbour: cos = 1, so with gray 0.5 its level is
// trunc((0.5 * (0.2857 + 1.05) + 0.065) * 255 + 0.5) = 187.
void two_points() {
  const std::vector<float> xyz = {-1, 0, 0, 1, 0, 0};
  RenderSettings st;
  st.gray = 0.5;
  const RenderedViews r = align3d::render_views(xyz.data(), 2, st, 1);
  CHECK(r.views == 9 && r.points == 2 && r.image_size == 336);
  for (int v = 0; v < 9; ++v) {
    CHECK(pixel(r, v, 0, 0) == 47 && pixel(r, v, 0, 1) == 167);
    CHECK(pixel(r, v, 1, 0) == 287 && pixel(r, v, 1, 1) == 167);
    CHECK(r.visible[at(r, v, 0)] == 1 && r.visible[at(r, v, 1)] == 1);
    int covered = 0;
    for (int y = 0; y < 336; ++y)
      for (int x = 0; x < 336; ++x) covered += image(r, v, y, x) != 255;
    CHECK(covered == 8);
    for (int x : {47, 48, 287, 288})
      for (int y : {167, 168}) CHECK(image(r, v, y, x) == 187);
  }
  // gray 0.7: a lone splat is 0.99999 -> 255, indistinguishable from the background.
  const RenderedViews white = align3d::render_views(xyz.data(), 2, RenderSettings{}, 1);
  for (std::uint8_t g : white.images) CHECK(g == 255);
}

// Occlusion: points 0 and 1 share a pixel in view 4 (x 0 deg, R ~ diag(1,-1,-1), camera on +z
// looking toward -z): point 1 (z = -0.5) is nearer there and wins. Duplicates: the lower index wins; the fallback
// copies the index-nearest seen point's flags (ties to the lower index).
void occlusion_and_fallback() {
  const std::vector<float> xyz = {0, 0, 0.5f, 0, 0, -0.5f, -1, 0, 0, 1, 0, 0, 1, 0, 0};
  const RenderedViews r = align3d::render_views(xyz.data(), 5, RenderSettings{}, 1, false);
  CHECK(pixel(r, 4, 0, 0) == pixel(r, 4, 1, 0) && pixel(r, 4, 0, 1) == pixel(r, 4, 1, 1));
  CHECK(r.visible[at(r, 4, 0)] == 0 && r.visible[at(r, 4, 1)] == 1);
  for (int v = 0; v < 9; ++v) CHECK(r.visible[at(r, v, 3)] == 1 && r.visible[at(r, v, 4)] == 0);
  const RenderedViews f = align3d::render_views(xyz.data(), 5, RenderSettings{}, 1, true);
  for (int v = 0; v < 9; ++v) CHECK(f.visible[at(f, v, 4)] == r.visible[at(r, v, 3)]);
  CHECK(f.images == r.images && f.pixels == r.pixels);
}

// All points coincide (spec §5.9): NaN pixel coordinates clamp to (0, 0), point 0 owns it, the
// others borrow its flags, the images stay blank.
void degenerate() {
  const std::vector<float> one = {0.25f, -1.0f, 3.0f};
  const RenderedViews r1 = align3d::render_views(one.data(), 1, RenderSettings{}, 2);
  for (int v = 0; v < 9; ++v) CHECK(pixel(r1, v, 0, 0) == 0 && pixel(r1, v, 0, 1) == 0 && r1.visible[v] == 1);
  const std::vector<float> same = {1, 2, 3, 1, 2, 3, 1, 2, 3};
  const RenderedViews raw = align3d::render_views(same.data(), 3, RenderSettings{}, 2, false);
  const RenderedViews r = align3d::render_views(same.data(), 3, RenderSettings{}, 2, true);
  for (int v = 0; v < 9; ++v) {
    CHECK(raw.visible[at(raw, v, 0)] == 1 && raw.visible[at(raw, v, 1)] == 0 && raw.visible[at(raw, v, 2)] == 0);
    CHECK(r.visible[at(r, v, 1)] == 1 && r.visible[at(r, v, 2)] == 1);
    CHECK(pixel(r, v, 2, 0) == 0 && pixel(r, v, 2, 1) == 0);
  }
  for (std::uint8_t g : r.images) CHECK(g == 255);
}

void threads_agree() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> xyz(3 * 3000);
  for (float& x : xyz) x = normal(rng);
  RenderSettings st;
  st.preset = "mvtec9";
  st.image_size = 96;
  const RenderedViews a = align3d::render_views(xyz.data(), 3000, st, 1);
  const RenderedViews b = align3d::render_views(xyz.data(), 3000, st, 4);
  CHECK(a.images == b.images && a.pixels == b.pixels && a.visible == b.visible);
  std::size_t visible = 0, shaded = 0;
  for (std::uint8_t v : a.visible) visible += v;
  for (std::uint8_t g : a.images) shaded += g != 255;
  CHECK(visible > 3000 && shaded > 0);
  for (std::int32_t p : a.pixels) CHECK(p >= 0 && p < 96);
}

void bad_input() {
  const std::vector<float> xyz = {0, 0, 0, 1, std::nanf(""), 0};
  CHECK_THROWS(align3d::render_views(xyz.data(), 2, RenderSettings{}), "NaN or infinite");
  CHECK_THROWS(align3d::render_views(xyz.data(), 0, RenderSettings{}), "non-empty");
  RenderSettings st;
  st.preset = "bogus";
  CHECK_THROWS(align3d::render_views(xyz.data(), 1, st), "unknown view preset");
  st = RenderSettings{};
  st.image_size = 0;
  CHECK_THROWS(align3d::render_views(xyz.data(), 1, st), "image_size");
  st = RenderSettings{};
  st.window = 0;
  CHECK_THROWS(align3d::render_views(xyz.data(), 1, st), "window");
  // Coordinates near the float32 limit: finite in f64, rendered without overflow or UB.
  const std::vector<float> huge = {-3e38f, 1.0f, 2e38f, 3e38f, -1e38f, 0.5f, 1.0f, 3e38f, -3e38f};
  const RenderedViews r = align3d::render_views(huge.data(), 3, RenderSettings{}, 1);
  for (std::int32_t p : r.pixels) CHECK(p >= 0 && p < 336);
}

}  // namespace

int main() {
  rotations();
  settings();
  two_points();
  occlusion_and_fallback();
  degenerate();
  threads_agree();
  bad_input();
  return check::finish("test_render");
}
