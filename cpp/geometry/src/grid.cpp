// Organized-grid arithmetic (spec §4.1 validity, §4.2 steps 1, 2 (distance only), 4, 5, 6).
#include <cmath>
#include <stdexcept>
#include <string>

#include "align3d/geometry.hpp"

namespace align3d {
namespace {

constexpr int kBorder = 10;

void check_grid(const float* grid, int h, int w) {
  if (h < 1 || w < 1) throw std::invalid_argument("grid must be H x W x 3 with H, W >= 1");
  if (grid == nullptr) throw std::invalid_argument("grid must not be null");
}

bool valid_cell(const float* p) {
  return std::isfinite(p[0]) && std::isfinite(p[1]) && std::isfinite(p[2]) &&
         (p[0] != 0.0f || p[1] != 0.0f || p[2] != 0.0f);
}

// Source index of output cell i for nearest resizing n_in -> n_out (grid.nearest_source).
long long nearest_source(long long i, int n_in, int n_out) {
  const double scale = static_cast<double>(n_in) / static_cast<double>(n_out);
  const long long src = static_cast<long long>(std::floor(static_cast<double>(i) * scale));
  return std::min<long long>(src, n_in - 1);
}

}  // namespace

Cloud drop_invalid_rows(const float* xyz, std::size_t n) {
  Cloud out;
  out.xyz.reserve(n * 3);
  for (std::size_t i = 0; i < n; ++i)
    if (valid_cell(xyz + 3 * i)) out.xyz.insert(out.xyz.end(), xyz + 3 * i, xyz + 3 * i + 3);
  return out;
}

std::vector<std::uint8_t> grid_valid_mask(const float* grid, int h, int w) {
  check_grid(grid, h, w);
  const std::size_t cells = static_cast<std::size_t>(h) * w;
  std::vector<std::uint8_t> valid(cells);
  for (std::size_t k = 0; k < cells; ++k) valid[k] = valid_cell(grid + 3 * k) ? 1 : 0;
  return valid;
}

std::vector<double> grid_border_points(const float* grid, const std::uint8_t* valid, int h, int w) {
  check_grid(grid, h, w);
  std::vector<double> out;
  for (int r = 0; r < h; ++r) {
    for (int c = 0; c < w; ++c) {
      const bool band = r < kBorder || r >= h - kBorder || c < kBorder || c >= w - kBorder;
      const std::size_t k = static_cast<std::size_t>(r) * w + c;
      if (!band || !valid[k]) continue;
      for (int a = 0; a < 3; ++a) out.push_back(static_cast<double>(grid[3 * k + a]));
    }
  }
  return out;
}

void grid_remove_plane_cells(const float* grid, std::uint8_t* valid, int h, int w, const std::array<double, 4>& plane,
                             double min_distance) {
  check_grid(grid, h, w);
  const double a = plane[0], b = plane[1], c = plane[2], d = plane[3];
  const double norm = std::max(std::sqrt(a * a + b * b + c * c), 1e-12);
  const std::size_t cells = static_cast<std::size_t>(h) * w;
  for (std::size_t k = 0; k < cells; ++k) {
    if (!valid[k]) continue;
    const double x = grid[3 * k], y = grid[3 * k + 1], z = grid[3 * k + 2];
    const double dist = std::fabs(((a * x + b * y) + c * z) + d) / norm;
    valid[k] = dist >= min_distance ? 1 : 0;
  }
}

std::vector<float> grid_clean_pad_resize(const float* grid, const std::uint8_t* valid, int h, int w, int size) {
  check_grid(grid, h, w);
  if (size < 1) throw std::invalid_argument("output size must be >= 1");
  const int side_h = static_cast<int>(std::ceil(h / 100.0)) * 100,
            side_w = static_cast<int>(std::ceil(w / 100.0)) * 100;
  const int side = std::max(side_h, side_w);
  const int top = (side - h) / 2, left = (side - w) / 2;
  std::vector<float> out(static_cast<std::size_t>(size) * size * 3, 0.0f);
  for (int i = 0; i < size; ++i) {
    const long long row = nearest_source(i, side, size) - top;
    if (row < 0 || row >= h) continue;
    for (int j = 0; j < size; ++j) {
      const long long col = nearest_source(j, side, size) - left;
      if (col < 0 || col >= w) continue;
      const std::size_t src = static_cast<std::size_t>(row) * w + static_cast<std::size_t>(col);
      if (!valid[src]) continue;  // cleaned cell: stays 0
      float* dst = out.data() + (static_cast<std::size_t>(i) * size + j) * 3;
      for (int a = 0; a < 3; ++a) dst[a] = grid[3 * src + a];
    }
  }
  return out;
}

GridPoints grid_points(const float* grid, int size) {
  if (size < 1) throw std::invalid_argument("grid size must be >= 1");
  GridPoints out;
  const std::size_t cells = static_cast<std::size_t>(size) * size;
  for (std::size_t k = 0; k < cells; ++k) {
    if (!valid_cell(grid + 3 * k)) continue;
    out.cloud.xyz.insert(out.cloud.xyz.end(), grid + 3 * k, grid + 3 * k + 3);
    out.grid_index.push_back(static_cast<std::int64_t>(k));
  }
  return out;
}

}  // namespace align3d
