// Back-projection and fusion (spec §7), as align3d_rt/kernels/backproject.py.
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>

#include "align3d/geometry.hpp"
#include "internal.hpp"

namespace align3d {
namespace {

void check_common(int views, int grid_size, int image_size, std::size_t n, const void* maps, const void* pixels) {
  if (views < 0) throw std::invalid_argument("views must be >= 0");
  if (grid_size < 1 || image_size < 1)
    throw std::invalid_argument("grid_size and image_size must be positive, got " + std::to_string(grid_size) + ", " +
                                std::to_string(image_size));
  if (views > 0 && (maps == nullptr || (n > 0 && pixels == nullptr)))
    throw std::invalid_argument("maps and pixels must not be null");
}

std::invalid_argument pixel_error(int image_size) {
  return std::invalid_argument("pixels of visible points must lie in [0, " + std::to_string(image_size - 1) + "]");
}

// §7 val_b for both branches of map view `m` (m[2][G][G]) at pixel (x, y).
inline void bilinear_pair(const float* m, int g, const BilinearTables& t, int x, int y, double& r, double& a) {
  const int x0 = t.i0[x], x1 = t.i1[x], y0 = t.i0[y], y1 = t.i1[y];
  const double lx1 = t.lam1[x], ly1 = t.lam1[y];
  const double lx0 = 1.0 - lx1, ly0 = 1.0 - ly1;
  const std::size_t gg = static_cast<std::size_t>(g) * g;
  const float* m0 = m;
  const float* m1 = m + gg;
  auto at = [g](const float* b, int row, int col) {
    return static_cast<double>(b[static_cast<std::size_t>(row) * g + col]);
  };
  r = ly0 * (lx0 * at(m0, y0, x0) + lx1 * at(m0, y0, x1)) + ly1 * (lx0 * at(m0, y1, x0) + lx1 * at(m0, y1, x1));
  a = ly0 * (lx0 * at(m1, y0, x0) + lx1 * at(m1, y0, x1)) + ly1 * (lx0 * at(m1, y1, x0) + lx1 * at(m1, y1, x1));
}

}  // namespace

BilinearTables bilinear_tables(int grid_size, int image_size) {
  if (grid_size < 1 || image_size < 1)
    throw std::invalid_argument("grid_size and image_size must be positive, got " + std::to_string(grid_size) + ", " +
                                std::to_string(image_size));
  BilinearTables t;
  t.i0.resize(image_size);
  t.i1.resize(image_size);
  t.lam1.resize(image_size);
  const double scale = static_cast<double>(static_cast<float>(grid_size) / static_cast<float>(image_size));
  for (int d = 0; d < image_size; ++d) {
    float src = static_cast<float>(scale * (d + 0.5) - 0.5);
    src = std::fmax(src, 0.0f);
    const std::int32_t i0 = static_cast<std::int32_t>(std::floor(src));
    t.i0[d] = i0;
    t.i1[d] = i0 < grid_size - 1 ? i0 + 1 : i0;
    t.lam1[d] = src - static_cast<float>(i0);
  }
  return t;
}

std::vector<double> sample_maps(const float* maps, int views, int grid_size, const std::int32_t* pixels, std::size_t n,
                                int image_size) {
  check_common(views, grid_size, image_size, n, maps, pixels);
  const BilinearTables t = bilinear_tables(grid_size, image_size);
  const std::size_t map_stride = 2 * static_cast<std::size_t>(grid_size) * grid_size;
  std::vector<double> out(static_cast<std::size_t>(views) * n * 2);
  for (int v = 0; v < views; ++v) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t k = static_cast<std::size_t>(v) * n + i;
      const int x = pixels[2 * k], y = pixels[2 * k + 1];
      if (x < 0 || y < 0 || x >= image_size || y >= image_size) throw pixel_error(image_size);
      bilinear_pair(maps + v * map_stride, grid_size, t, x, y, out[2 * k], out[2 * k + 1]);
    }
  }
  return out;
}

std::vector<float> backproject(const float* maps, int views, int grid_size, const std::int32_t* pixels,
                               const std::uint8_t* visible, std::size_t n, int image_size, double fusion_weight,
                               unsigned threads) {
  check_common(views, grid_size, image_size, n, maps, pixels);
  if (!(fusion_weight >= 0.0 && fusion_weight <= 1.0))
    throw std::invalid_argument("fusion_weight must be in [0,1], got " + std::to_string(fusion_weight));
  for (std::size_t k = 0; k < static_cast<std::size_t>(views) * n; ++k) {
    if (!visible[k]) continue;
    const int x = pixels[2 * k], y = pixels[2 * k + 1];
    if (x < 0 || y < 0 || x >= image_size || y >= image_size) throw pixel_error(image_size);
  }
  const BilinearTables t = bilinear_tables(grid_size, image_size);
  const std::size_t map_stride = 2 * static_cast<std::size_t>(grid_size) * grid_size;
  std::vector<float> out(n * 3);
  const std::size_t chunk = 4096;
  const std::size_t chunks = (n + chunk - 1) / chunk;
  std::atomic<std::size_t> next{0};
  auto worker = [&]() {
    for (std::size_t c = next++; c < chunks; c = next++) {
      const std::size_t end = std::min(n, (c + 1) * chunk);
      for (std::size_t i = c * chunk; i < end; ++i) {
        double acc_r = 0.0, acc_a = 0.0;
        int count = 0;
        for (int v = 0; v < views; ++v) {
          const std::size_t k = static_cast<std::size_t>(v) * n + i;
          if (!visible[k]) continue;
          double r, a;
          bilinear_pair(maps + v * map_stride, grid_size, t, pixels[2 * k], pixels[2 * k + 1], r, a);
          acc_r += r;
          acc_a += a;
          ++count;
        }
        if (count > 0) {
          const double r = acc_r / count, a = acc_a / count;
          out[3 * i] = static_cast<float>(r);
          out[3 * i + 1] = static_cast<float>(a);
          out[3 * i + 2] = static_cast<float>(fusion_weight * a + (1.0 - fusion_weight) * r);
        } else {
          out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = 0.0f;
        }
      }
    }
  };
  detail::run_workers(detail::worker_count(threads, chunks), worker);
  return out;
}

}  // namespace align3d
