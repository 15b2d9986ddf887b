// Organized-grid steps (spec §4.2), .npy validity (§4.1) and Real3D-AD resampling (§4.3).
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "align3d/geometry.hpp"
#include "check.hpp"

namespace {

float* cell(std::vector<float>& g, int w, int r, int c) { return g.data() + (static_cast<std::size_t>(r) * w + c) * 3; }

void validity() {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> xyz = {0, 0, 0, 0, 0, 1, nan, 1, 1, 1, inf, 1, -0.0f, 0, 0, 2, 3, 4};
  const align3d::Cloud c = align3d::drop_invalid_rows(xyz.data(), 6);
  CHECK((c.xyz == std::vector<float>{0, 0, 1, 2, 3, 4}));
  CHECK((align3d::grid_valid_mask(xyz.data(), 2, 3) == std::vector<std::uint8_t>{0, 1, 0, 0, 0, 1}));
}

// A 200 x 300 grid: side 300, top 50, left 0; output row i reads row floor(i * 300/336) - 50, so
// rows 56..279 hold rows 0..199 (56 * 0.8928... = 50.000000000000007 -> 50; 280 -> 250 = off).
void pad_resize_points() {
  const int h = 200, w = 300;
  std::vector<float> g(static_cast<std::size_t>(h) * w * 3);
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < w; ++c) {
      float* p = cell(g, w, r, c);
      p[0] = static_cast<float>(r + 1), p[1] = static_cast<float>(c + 1), p[2] = 1.0f;
    }
  std::vector<std::uint8_t> valid = align3d::grid_valid_mask(g.data(), h, w);
  valid[0] = 0;  // cleaned: reads as 0
  const std::vector<float> out = align3d::grid_clean_pad_resize(g.data(), valid.data(), h, w);
  CHECK(out.size() == 336u * 336u * 3u);
  auto at = [&](int r, int c, int a) { return out[(static_cast<std::size_t>(r) * 336 + c) * 3 + a]; };
  // Output columns 0 and 1 both read column 0 (1 * 0.89 -> 0), column 2 reads column 1.
  CHECK(at(55, 2, 2) == 0.0f && at(56, 2, 0) == 1.0f && at(56, 2, 1) == 2.0f);
  CHECK(at(56, 0, 2) == 0.0f && at(56, 1, 2) == 0.0f);  // the cleaned cell (0, 0)
  CHECK(at(279, 335, 0) == 200.0f && at(279, 335, 1) == 300.0f && at(280, 335, 2) == 0.0f);
  CHECK(at(100, 200, 1) == static_cast<float>(static_cast<int>(std::floor(200 * (300.0 / 336.0))) + 1));
  const align3d::GridPoints pts = align3d::grid_points(out.data());
  CHECK(pts.cloud.size() == 224u * 336u - 4u);  // rows 56, 57 and columns 0, 1 read the cleaned cell
  CHECK(pts.grid_index.front() == 56 * 336 + 2 && pts.grid_index.back() == 279 * 336 + 335);
  CHECK(pts.cloud.xyz[0] == 1.0f && pts.cloud.xyz[1] == 2.0f);
}

void border_and_plane() {
  const int h = 30, w = 30;
  std::vector<float> g(h * w * 3, 0.0f);
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < w; ++c) cell(g, w, r, c)[0] = 1.0f;
  std::vector<std::uint8_t> valid = align3d::grid_valid_mask(g.data(), h, w);
  CHECK(align3d::grid_border_points(g.data(), valid.data(), h, w).size() == 3u * 800u);
  valid[0] = 0;
  valid[15 * w + 15] = 0;  // inside, not in the band
  CHECK(align3d::grid_border_points(g.data(), valid.data(), h, w).size() == 3u * 799u);
  cell(g, w, 1, 0)[2] = 0.004f;
  cell(g, w, 2, 0)[2] = 0.006f;
  cell(g, w, 3, 0)[2] = -0.006f;
  std::vector<std::uint8_t> v2 = align3d::grid_valid_mask(g.data(), h, w);
  align3d::grid_remove_plane_cells(g.data(), v2.data(), h, w, {0.0, 0.0, 2.0, 0.0});
  CHECK(v2[1 * w] == 0 && v2[2 * w] == 1 && v2[3 * w] == 1 && v2[4 * w] == 0);
}

std::vector<std::int64_t> naive_fps(const std::vector<float>& xyz, std::size_t n, std::size_t k) {
  std::vector<double> dist(n, std::numeric_limits<double>::infinity());
  std::vector<std::int64_t> out;
  std::size_t cur = 0;
  for (std::size_t it = 0; it < k; ++it) {
    out.push_back(static_cast<std::int64_t>(cur));
    std::size_t best = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double dx = static_cast<double>(xyz[3 * i]) - xyz[3 * cur],
                   dy = static_cast<double>(xyz[3 * i + 1]) - xyz[3 * cur + 1],
                   dz = static_cast<double>(xyz[3 * i + 2]) - xyz[3 * cur + 2];
      dist[i] = std::min(dist[i], (dx * dx + dy * dy) + dz * dz);
      if (dist[i] > dist[best]) best = i;
    }
    cur = best;
  }
  return out;
}

// §4.2 steps 2-3: splitmix64's published first outputs, a planted plane, DBSCAN numbering and noise.
void ransac_and_dbscan() {
  std::uint64_t state = 0;
  CHECK(align3d::splitmix64_next(state) == 0xE220A8397B1DCDAFULL);
  CHECK(align3d::splitmix64_next(state) == 0x6E789E6AA1B965F4ULL);
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> unit(-0.05, 0.05);
  std::vector<double> pts;
  for (int i = 0; i < 600; ++i) {
    const double x = unit(rng), y = unit(rng);
    const bool outlier = i % 5 == 0;  // 20% of the points 1-5 cm off the plane
    pts.insert(pts.end(), {x, y, 0.3 + 0.1 * x - 0.05 * y + (outlier ? 0.01 + std::fabs(unit(rng)) * 0.8 : 0.0)});
  }
  std::array<double, 4> plane{};
  CHECK(align3d::fit_plane_ransac(pts.data(), 600, 0.004, 50, 200, 0, plane));
  const double scale = -1.0 / plane[2];  // normalise to z = a x + b y + d
  CHECK(std::fabs(plane[0] * scale - 0.1) < 1e-9 && std::fabs(plane[1] * scale + 0.05) < 1e-9);
  CHECK(std::fabs(plane[3] * scale - 0.3) < 1e-9);
  CHECK(!align3d::fit_plane_ransac(pts.data(), 49, 0.004, 50, 10, 0, plane));
  // two 10x10 patches (1 mm pitch) 5 cm apart and one stray point: clusters 0, 1 in point order, noise -1
  std::vector<double> two;
  for (int k = 0; k < 2; ++k)
    for (int i = 0; i < 100; ++i) two.insert(two.end(), {0.05 * k + 0.001 * (i % 10), 0.001 * (i / 10), 0.3});
  two.insert(two.end(), {1.0, 1.0, 1.0});
  const auto labels = align3d::dbscan_labels(two.data(), 201, 0.006, 30);
  CHECK(labels[0] == 0 && labels[99] == 0 && labels[100] == 1 && labels[199] == 1 && labels[200] == -1);
}

void resampling() {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  const std::size_t n = 3000;
  std::vector<float> xyz(3 * n);
  for (float& x : xyz) x = unit(rng);
  for (int a = 0; a < 3; ++a) xyz[3 * 17 + a] = xyz[3 * 4 + a];  // a duplicate point
  CHECK(align3d::farthest_point_sampling(xyz.data(), n, 500) == naive_fps(xyz, n, 500));
  const align3d::Cloud down = align3d::resample_real3d(xyz.data(), n, 400);
  CHECK(down.size() == 400 && down.xyz[0] == xyz[0]);
  CHECK(align3d::resample_real3d(xyz.data(), n, n).xyz == xyz);
  const align3d::Cloud rep = align3d::resample_real3d(xyz.data(), 1, 7);
  CHECK(rep.size() == 7 && rep.xyz[18] == xyz[0] && rep.xyz[20] == xyz[2]);
  // Five points on a line up to 12: pass 0 pairs every point with its nearest neighbour (ties:
  // lower index), pass 1 takes sources (0*5)//2 = 0 and (1*5)//2 = 2 with their 2nd neighbours.
  const std::vector<float> line = {0, 1, 1, 1, 1, 1, 2, 1, 1, 3, 1, 1, 4, 1, 1};
  const align3d::Cloud up = align3d::resample_real3d(line.data(), 5, 12);
  CHECK(up.size() == 12);
  std::vector<float> xs;
  for (std::size_t i = 0; i < up.size(); ++i) xs.push_back(up.xyz[3 * i]);
  CHECK((xs == std::vector<float>{0, 1, 2, 3, 4, 0.5f, 0.5f, 1.5f, 2.5f, 3.5f, 1.0f, 2.5f}));
  CHECK_THROWS(align3d::resample_real3d(xyz.data(), 0, 5), "no point");
}

}  // namespace

int main() {
  validity();
  pad_resize_points();
  border_and_plane();
  ransac_and_dbscan();
  resampling();
  return check::finish("test_grid");
}
