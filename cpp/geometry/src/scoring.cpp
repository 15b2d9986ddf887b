// Object score and the evaluation-only grid blur (spec §8), as align3d_rt/scoring.py.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "align3d/geometry.hpp"

namespace align3d {

std::vector<float> fuse_global_probs(const float* global_probs, int views, double fusion_weight) {
  const float wf = static_cast<float>(fusion_weight);
  const float w1 = static_cast<float>(1.0 - fusion_weight);
  std::vector<float> g(static_cast<std::size_t>(std::max(views, 0)));
  for (int v = 0; v < views; ++v) g[v] = wf * global_probs[2 * v + 1] + w1 * global_probs[2 * v];
  return g;
}

namespace {

// numpy's pairwise_sum (numpy/_core/src/umath/loops_utils.h.src): block size 128, unroll 8.
template <typename T>
T pairwise_sum(const T* a, std::size_t n) {
  if (n < 8) {
    T res = n ? a[0] : T(0);
    for (std::size_t i = 1; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    T r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    std::size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

float numpy_sum_f32(const float* a, std::size_t n) { return pairwise_sum(a, n); }

double object_score(const float* point_scores, std::size_t n, const float* global_probs, int views,
                    double fusion_weight) {
  if (views < 1) throw std::invalid_argument("object_score needs at least one view");
  const std::vector<float> g = fuse_global_probs(global_probs, views, fusion_weight);
  const float mean = numpy_sum_f32(g.data(), g.size()) / static_cast<float>(views);
  float peak = n ? point_scores[2] : 0.0f;
  for (std::size_t i = 1; i < n && !std::isnan(peak); ++i) {  // np.max propagates NaN
    const float s = point_scores[3 * i + 2];
    if (std::isnan(s) || s > peak) peak = s;
  }
  return static_cast<double>(peak) + static_cast<double>(mean);
}

std::vector<float> points_to_grid(const float* values, const std::int64_t* grid_index, std::size_t n, int h, int w) {
  if (h < 1 || w < 1) throw std::invalid_argument("grid shape must be positive");
  const std::int64_t cells = static_cast<std::int64_t>(h) * w;
  std::vector<float> grid(static_cast<std::size_t>(cells), 0.0f);
  for (std::size_t i = 0; i < n; ++i) {
    if (grid_index[i] < 0 || grid_index[i] >= cells)
      throw std::invalid_argument("points_to_grid: grid_index outside [0, " + std::to_string(cells - 1) +
                                  "] for grid " + std::to_string(h) + "x" + std::to_string(w));
    grid[static_cast<std::size_t>(grid_index[i])] = values[i];
  }
  return grid;
}

namespace {

// scipy.ndimage 'reflect' extension (d c b a | a b c d | d c b a) of index j into [0, n).
std::size_t reflect_index(long long j, long long n) {
  const long long period = 2 * n;
  long long m = j % period;
  if (m < 0) m += period;
  return static_cast<std::size_t>(m < n ? m : period - 1 - m);
}

// One axis of scipy's correlate1d with a symmetric kernel: out = in[0]*w0 + sum_j (in[-j] + in[j]) * w_j.
void blur_axis(const float* in, float* out, int lines, int length, std::size_t line_stride, std::size_t step,
               const std::vector<double>& weights) {
  const int radius = static_cast<int>(weights.size()) - 1;
  std::vector<double> line(static_cast<std::size_t>(length) + 2 * radius);
  for (int l = 0; l < lines; ++l) {
    const float* src = in + l * line_stride;
    for (int j = -radius; j < length + radius; ++j)
      line[static_cast<std::size_t>(j + radius)] = src[reflect_index(j, length) * step];
    for (int k = 0; k < length; ++k) {
      const double* c = line.data() + k + radius;
      double acc = c[0] * weights[0];
      for (int j = radius; j >= 1; --j) acc += (c[-j] + c[j]) * weights[j];
      out[l * line_stride + static_cast<std::size_t>(k) * step] = static_cast<float>(acc);
    }
  }
}

}  // namespace

std::vector<float> blur_grid(const float* grid, int h, int w, double sigma) {
  if (h < 1 || w < 1) throw std::invalid_argument("grid shape must be positive");
  if (!(sigma > 0.0)) throw std::invalid_argument("sigma must be positive");
  const int radius = static_cast<int>(4.0 * sigma + 0.5);  // truncate = 4
  std::vector<double> weights(static_cast<std::size_t>(radius) + 1);
  double total = 0.0;
  std::vector<double> full(2 * static_cast<std::size_t>(radius) + 1);
  for (int x = -radius; x <= radius; ++x) {
    full[static_cast<std::size_t>(x + radius)] = std::exp(-0.5 / (sigma * sigma) * static_cast<double>(x * x));
  }
  total = pairwise_sum(full.data(), full.size());  // phi_x.sum()
  for (int j = 0; j <= radius; ++j)
    weights[static_cast<std::size_t>(j)] = full[static_cast<std::size_t>(j + radius)] / total;
  std::vector<float> tmp(static_cast<std::size_t>(h) * w), out(tmp.size());
  blur_axis(grid, tmp.data(), w, h, 1, static_cast<std::size_t>(w), weights);        // axis 0: columns
  blur_axis(tmp.data(), out.data(), h, w, static_cast<std::size_t>(w), 1, weights);  // axis 1: rows
  return out;
}

}  // namespace align3d
