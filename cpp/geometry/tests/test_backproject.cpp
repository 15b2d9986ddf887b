// Bilinear tables (appendix A), back-projection and fusion against hand-computed values (spec §7).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "align3d/geometry.hpp"
#include "check.hpp"

namespace {

std::uint32_t bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

void tables() {
  const align3d::BilinearTables t = align3d::bilinear_tables(24, 336);
  for (int d = 0; d <= 6; ++d) CHECK(t.i0[d] == 0 && t.i1[d] == 1 && t.lam1[d] == 0.0f);
  CHECK(t.i0[7] == 0 && t.i1[7] == 1 && t.lam1[7] == 0.03571430966258049f);
  CHECK(bits(t.lam1[8]) == 0x3DDB6DBAu);
  CHECK(t.i0[329] == 23 && t.i1[329] == 23 && t.lam1[329] == 0.03571510314941406f);
  CHECK(t.i0[330] == 23 && t.i1[330] == 23 && t.lam1[330] == 0.10714340209960938f);
  CHECK(t.i0[335] == 23 && t.i1[335] == 23 && t.lam1[335] == 0.46428680419921875f);
  // G = 2, S = 4: src = 0.5 (d + 0.5) - 0.5 = -0.25 (-> 0), 0.25, 0.75, 1.25.
  const align3d::BilinearTables s = align3d::bilinear_tables(2, 4);
  CHECK((s.i0 == std::vector<std::int32_t>{0, 0, 0, 1}));
  CHECK((s.i1 == std::vector<std::int32_t>{1, 1, 1, 1}));
  CHECK((s.lam1 == std::vector<float>{0.0f, 0.25f, 0.75f, 0.25f}));
  CHECK_THROWS(align3d::bilinear_tables(0, 4), "positive");
}

// G = 2, S = 4, two views. View 0: render map [[0,1],[2,3]], aligned map all 0.5; view 1: render
// all 0.5, aligned all 0.25. Pixel (x=1, y=2): lx1 = 0.25, ly1 = 0.75, so view 0's render value is
// 0.25 (0.75*0 + 0.25*1) + 0.75 (0.75*2 + 0.25*3) = 1.75.
void hand_values() {
  const std::vector<float> maps = {0,    1,    2,    3,    0.5f,  0.5f,  0.5f,  0.5f,
                                   0.5f, 0.5f, 0.5f, 0.5f, 0.25f, 0.25f, 0.25f, 0.25f};
  // Points: 0 at (1,2) in both views; 1 at (1,2) visible in view 0 only; 2 visible nowhere;
  // 3 at (3,3) (i0 = i1 = 1, lam 0.25): 0.75*3 + 0.25*3 = 3 in view 0, visible there only.
  const std::vector<std::int32_t> pixels = {1, 2, 1, 2, 0, 0, 3,  3,   // view 0
                                            1, 2, 3, 0, 9, 9, -1, 7};  // view 1 (invisible ones may be off-image)
  const std::vector<std::uint8_t> visible = {1, 1, 0, 1, 1, 0, 0, 0};
  const std::vector<float> s = align3d::backproject(maps.data(), 2, 2, pixels.data(), visible.data(), 4, 4, 0.25, 1);
  CHECK(s[0] == 1.125f && s[1] == 0.375f && s[2] == 0.9375f);  // (1.75+0.5)/2, (0.5+0.25)/2, 0.25a + 0.75r
  CHECK(s[3] == 1.75f && s[4] == 0.5f && s[5] == 1.4375f);
  CHECK(s[6] == 0.0f && s[7] == 0.0f && s[8] == 0.0f);
  CHECK(s[9] == 3.0f && s[10] == 0.5f && s[11] == 2.375f);
  // The fused channel comes from the f64 means: w = 0.1 gives 0.1*0.375 + 0.9*1.125 in f64, once rounded.
  const std::vector<float> w = align3d::backproject(maps.data(), 2, 2, pixels.data(), visible.data(), 4, 4, 0.1, 1);
  CHECK(w[2] == static_cast<float>(0.1 * 0.375 + (1.0 - 0.1) * 1.125));
  std::vector<std::int32_t> on_image = pixels;
  on_image[10] = 0, on_image[11] = 0, on_image[12] = 0, on_image[13] = 0, on_image[14] = 0, on_image[15] = 0;
  const std::vector<double> values = align3d::sample_maps(maps.data(), 2, 2, on_image.data(), 4, 4);
  CHECK(values[0] == 1.75 && values[1] == 0.5 && values[6] == 3.0);
  CHECK(values[8] == 0.5 && values[9] == 0.25);
  std::vector<std::uint8_t> bad_visible = visible;
  bad_visible[6] = 1;  // point 2 of view 1 at (9, 9): outside the 4x4 image
  CHECK_THROWS(align3d::backproject(maps.data(), 2, 2, pixels.data(), bad_visible.data(), 4, 4, 0.5, 1), "[0, 3]");
  CHECK_THROWS(align3d::backproject(maps.data(), 2, 2, pixels.data(), visible.data(), 4, 4, 1.5, 1), "fusion_weight");
  CHECK_THROWS(align3d::sample_maps(maps.data(), 2, 2, pixels.data(), 4, 4), "[0, 3]");
}

// Many points: threads do not change a bit, and the result equals the mean of sample_maps.
void threads_and_sampling_agree() {
  const int views = 3, g = 24, size = 336;
  const std::size_t n = 20000;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::uniform_int_distribution<int> pix(0, size - 1), coin(0, 1);
  std::vector<float> maps(static_cast<std::size_t>(views) * 2 * g * g);
  for (float& m : maps) m = unit(rng);
  std::vector<std::int32_t> pixels(views * n * 2);
  for (std::int32_t& p : pixels) p = pix(rng);
  std::vector<std::uint8_t> visible(views * n);
  for (std::uint8_t& v : visible) v = static_cast<std::uint8_t>(coin(rng));
  const auto one = align3d::backproject(maps.data(), views, g, pixels.data(), visible.data(), n, size, 0.3, 1);
  const auto many = align3d::backproject(maps.data(), views, g, pixels.data(), visible.data(), n, size, 0.3, 4);
  CHECK(one == many);
  const std::vector<double> values = align3d::sample_maps(maps.data(), views, g, pixels.data(), n, size);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double r = 0, a = 0;
    int count = 0;
    for (int v = 0; v < views; ++v) {
      const std::size_t k = static_cast<std::size_t>(v) * n + i;
      if (!visible[k]) continue;
      r += values[2 * k];
      a += values[2 * k + 1];
      ++count;
    }
    const float er = count ? static_cast<float>(r / count) : 0.0f;
    const float ea = count ? static_cast<float>(a / count) : 0.0f;
    mismatches += one[3 * i] != er || one[3 * i + 1] != ea;
    CHECK(one[3 * i] >= 0.0f && one[3 * i] <= 1.0f);
  }
  CHECK(mismatches == 0);
}

}  // namespace

int main() {
  tables();
  hand_values();
  threads_and_sampling_agree();
  return check::finish("test_backproject");
}
