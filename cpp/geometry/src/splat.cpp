// The splat renderer and correspondences (spec §5), bit-compatible with align3d_rt/render/splat.py.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <thread>

#include "align3d/geometry.hpp"
#include "internal.hpp"

namespace align3d {
namespace {

constexpr double kZoom = 0.7;
constexpr double kTan = 0x1.279a74590331cp-1;  // tan(30 deg) as Python computes it
constexpr double kDepthLevels = 2147483646.0;
constexpr std::uint64_t kEmpty = 0xFFFFFFFFFFFFFFFFull;
constexpr std::uint64_t kIndexMask = 0xFFFFFFFFull;
constexpr double kAmbient = 0.2857, kDiffuse = 1.05, kSpecular = 0.065, kDepthJump = 6.0;

struct Camera {
  double ccx, ccy, eye_z, z0, inv_span;
};

// §5.3: Open3D's default camera fitted to the rotated cloud's bounding box.
Camera fit_camera(const float* xyz, std::size_t n, const Mat3& r) {
  const double inf = std::numeric_limits<double>::infinity();
  double lo[3] = {inf, inf, inf}, hi[3] = {-inf, -inf, -inf};
  for (std::size_t i = 0; i < n; ++i) {
    const double px = xyz[3 * i], py = xyz[3 * i + 1], pz = xyz[3 * i + 2];
    for (int k = 0; k < 3; ++k) {
      const double q = (r[3 * k] * px + r[3 * k + 1] * py) + r[3 * k + 2] * pz;
      lo[k] = std::min(lo[k], q);
      hi[k] = std::max(hi[k], q);
    }
  }
  const double ex = hi[0] - lo[0], ey = hi[1] - lo[1], ez = hi[2] - lo[2];
  const double ext = std::max(ex, std::max(ey, ez));
  const double dist = kZoom * ext / kTan;
  const double eye_z = 0.5 * (lo[2] + hi[2]) + dist;
  return {0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]), eye_z, eye_z - hi[2], 1.0 / std::max(ez, 1e-30)};
}

// Pixel rule floor(u * scale) clamped to the image (NaN -> 0 as x86 converts it, §5.9).
std::int32_t pixel_index(double u, int size, double scale) {
  const std::int64_t p = detail::floor_to_i64(u * scale);
  if (p < 0) return 0;
  if (p > size - 1) return size - 1;
  return static_cast<std::int32_t>(p);
}

// §5.5: first and last pixel of the splat, clipped to the image (may be empty: hi < lo).
inline void splat_span(double u, double scale, double splat, int size, int& lo_out, int& hi_out) {
  const double pos = (u + 0.5) * scale;
  std::int64_t lo = detail::ceil_to_i64(pos - 0.5 * splat - 0.5);
  std::int64_t hi = detail::wrap_sub(detail::ceil_to_i64(pos + 0.5 * splat - 0.5), 1);
  if (hi < lo) {
    lo = detail::floor_to_i64(pos);
    hi = lo;
  }
  // Clip as the reference does (max(lo, 0), min(hi, S-1)); values beyond the image are pinned to
  // size / -1 so that they fit an int and an off-image splat stays empty.
  lo_out = static_cast<int>(std::min<std::int64_t>(std::max<std::int64_t>(lo, 0), size));
  hi_out = static_cast<int>(std::max<std::int64_t>(std::min<std::int64_t>(hi, size - 1), -1));
}

// Buffers of one view; reused by a worker across the views it renders.
struct ViewWork {
  // Point and splat z-buffers [S][S], interleaved: a point's own pixel is usually inside its splat,
  // so both writes of a point mostly land in one cache line.
  std::vector<std::uint64_t> zbuf;  // [S][S][2]: 0 = point buffer, 1 = splat buffer
  std::vector<float> pos;           // [S][S][3] f32 camera coordinates of the splat winner
  std::vector<float> cam;           // [N][3] f32 camera coordinates of every point
};

double pow100(double s) {
  const double s2 = s * s, s4 = s2 * s2, s8 = s4 * s4, s16 = s8 * s8, s32 = s16 * s16;
  return s32 * s32 * s32 * s4;
}

// §5.7 neighbour-or-self.
struct Neighbour {
  bool ok;
  float x, y, z;
};

inline Neighbour neighbour(const float* pos, int size, int y, int x, bool inside, float px, float py, float pz,
                           double tol) {
  const float* n = pos + (static_cast<std::size_t>(y) * size + x) * 3;
  const float nz = n[2];
  const bool ok = inside && nz > 0.0f && static_cast<double>(std::fabs(nz - pz)) <= tol;
  return ok ? Neighbour{true, n[0], n[1], nz} : Neighbour{false, px, py, pz};
}

// §5.7: gray level of covered pixel (y, x).
std::uint8_t shade(const float* pos, int size, int y, int x, int step, double gray) {
  const float* p = pos + (static_cast<std::size_t>(y) * size + x) * 3;
  const float px = p[0], py = p[1], pz = p[2];
  const double tol = kDepthJump * step * 2.0 * kTan / size * static_cast<double>(pz);
  const Neighbour r = neighbour(pos, size, y, std::min(x + step, size - 1), x + step < size, px, py, pz, tol);
  const Neighbour l = neighbour(pos, size, y, std::max(x - step, 0), x - step >= 0, px, py, pz, tol);
  const Neighbour d = neighbour(pos, size, std::min(y + step, size - 1), x, y + step < size, px, py, pz, tol);
  const Neighbour u = neighbour(pos, size, std::max(y - step, 0), x, y - step >= 0, px, py, pz, tol);
  const float ax = r.x - l.x, ay = r.y - l.y, az = r.z - l.z;
  const float bx = d.x - u.x, by = d.y - u.y, bz = d.z - u.z;
  const float nx = ay * bz - az * by, ny = az * bx - ax * bz, nz = ax * by - ay * bx;
  const float nn = std::sqrt(nx * nx + ny * ny + nz * nz);
  const float pp = std::sqrt(px * px + py * py + pz * pz);
  const bool good = (r.ok || l.ok) && (d.ok || u.ok) && nn > 0.0f && pp > 0.0f;
  const double cosine = good ? static_cast<double>(std::fabs(nx * px + ny * py + nz * pz) / (nn * pp)) : 1.0;
  const double spec = std::max(2.0 * cosine * cosine - 1.0, 0.0);
  const double val = std::min(gray * (kAmbient + kDiffuse * cosine) + kSpecular * pow100(spec), 1.0);
  const std::int64_t q = detail::x86_to_i64(val * 255.0 + 0.5);
  return static_cast<std::uint8_t>(q < 0 ? 0 : (q > 255 ? 255 : q));
}

void render_one_view(const float* xyz, std::size_t n, const RenderSettings& st, const Mat3& r, int v,
                     RenderedViews& out, ViewWork& work) {
  const int size = st.image_size;
  const std::size_t pixels_per_view = static_cast<std::size_t>(size) * size;
  work.zbuf.assign(2 * pixels_per_view, kEmpty);
  work.pos.resize(pixels_per_view * 3);
  work.cam.resize(n * 3);
  const Camera cam = fit_camera(xyz, n, r);
  const double window = st.window;
  const double f = window / (2.0 * kTan), c = window / 2.0 - 0.5;
  const double scale = static_cast<double>(size) / window;
  const double splat = static_cast<double>(st.point_size) * size / window;
  std::int32_t* pixels = out.pixels.data() + static_cast<std::size_t>(v) * n * 2;
  std::uint8_t* visible = out.visible.data() + static_cast<std::size_t>(v) * n;
  std::fill(visible, visible + n, std::uint8_t{0});

  // Projection in blocks: first every key and pixel span of a block (no memory dependences, so
  // the arithmetic pipelines), then the scattered z-buffer writes. Keys are unique, so the
  // order of the min-writes does not matter.
  constexpr std::size_t kBlock = 256;
  std::uint64_t keys[kBlock];
  int spans[kBlock][4];
  for (std::size_t start = 0; start < n; start += kBlock) {
    const std::size_t stop = std::min(n, start + kBlock);
    for (std::size_t i = start; i < stop; ++i) {
      const double px = xyz[3 * i], py = xyz[3 * i + 1], pz = xyz[3 * i + 2];
      const double qx = (r[0] * px + r[1] * py) + r[2] * pz;
      const double qy = (r[3] * px + r[4] * py) + r[5] * pz;
      const double qz = (r[6] * px + r[7] * py) + r[8] * pz;
      const double xc = qx - cam.ccx, yc = -(qy - cam.ccy), zc = cam.eye_z - qz;
      work.cam[3 * i] = detail::to_f32(xc);
      work.cam[3 * i + 1] = detail::to_f32(yc);
      work.cam[3 * i + 2] = detail::to_f32(zc);
      const double inv = 1.0 / zc;
      const double u = f * xc * inv + c, w = f * yc * inv + c;
      double t = (zc - cam.z0) * cam.inv_span;
      if (t < 0.0) t = 0.0;
      if (t > 1.0) t = 1.0;
      const std::size_t j = i - start;
      keys[j] =
          (static_cast<std::uint64_t>(detail::x86_to_i64(t * kDepthLevels)) << 32) | static_cast<std::uint64_t>(i);
      pixels[2 * i] = pixel_index(u, size, scale);
      pixels[2 * i + 1] = pixel_index(w, size, scale);
      // A NaN u or w happens only for a cloud of coincident points (zc = 0, §5.9); the reference
      // then splats the whole image, but pos z = 0 leaves it blank either way: no splat.
      if (std::isfinite(u) && std::isfinite(w)) {
        splat_span(u, scale, splat, size, spans[j][0], spans[j][1]);
        splat_span(w, scale, splat, size, spans[j][2], spans[j][3]);
      } else {
        spans[j][0] = 0, spans[j][1] = -1, spans[j][2] = 0, spans[j][3] = -1;
      }
    }
    for (std::size_t i = start; i < stop; ++i) {
      const std::size_t j = i - start;
      const std::uint64_t key = keys[j];
      std::uint64_t& cell = work.zbuf[2 * (static_cast<std::size_t>(pixels[2 * i + 1]) * size + pixels[2 * i])];
      cell = std::min(cell, key);
      for (int yy = spans[j][2]; yy <= spans[j][3]; ++yy) {
        std::uint64_t* row = work.zbuf.data() + 2 * static_cast<std::size_t>(yy) * size + 1;
        for (int xx = spans[j][0]; xx <= spans[j][1]; ++xx) row[2 * xx] = std::min(row[2 * xx], key);
      }
    }
  }

  for (std::size_t k = 0; k < pixels_per_view; ++k) {  // resolve: visibility and position buffer
    const std::uint64_t pk = work.zbuf[2 * k];
    if (pk != kEmpty) visible[pk & kIndexMask] = 1;
    const std::uint64_t sk = work.zbuf[2 * k + 1];
    if (sk == kEmpty) {
      work.pos[3 * k] = 0.0f;
      work.pos[3 * k + 1] = 0.0f;
      work.pos[3 * k + 2] = 0.0f;
      continue;
    }
    const float* owner = work.cam.data() + 3 * (sk & kIndexMask);
    work.pos[3 * k] = owner[0];
    work.pos[3 * k + 1] = owner[1];
    work.pos[3 * k + 2] = owner[2];
  }

  const int step = std::max(1, static_cast<int>(std::nearbyint(splat)));  // round half to even
  std::uint8_t* image = out.images.data() + static_cast<std::size_t>(v) * pixels_per_view * 3;
  std::fill(image, image + pixels_per_view * 3, std::uint8_t{255});
  for (int y = 0; y < size; ++y) {  // deferred shading
    for (int x = 0; x < size; ++x) {
      const std::size_t k = static_cast<std::size_t>(y) * size + x;
      if (!(work.pos[3 * k + 2] > 0.0f)) continue;
      const std::uint8_t g = shade(work.pos.data(), size, y, x, step, st.gray);
      image[3 * k] = g;
      image[3 * k + 1] = g;
      image[3 * k + 2] = g;
    }
  }
}

}  // namespace

RenderedViews render_views(const float* xyz, std::size_t n, const RenderSettings& settings, unsigned threads,
                           bool fallback) {
  check_settings(settings);
  if (n == 0) throw std::invalid_argument("points: expected a non-empty (N,3) array, got 0 points");
  if (n >= 0xFFFFFFFFull)
    throw std::invalid_argument("points: " + std::to_string(n) +
                                " points is more than the renderer's 32-bit index allows");
  for (std::size_t i = 0; i < 3 * n; ++i)
    if (!std::isfinite(xyz[i]))
      throw std::invalid_argument("points: NaN or infinite coordinates (pass valid points only)");
  const std::vector<Mat3> rots = view_rotations(settings.preset);
  const int views = static_cast<int>(rots.size());
  const std::size_t s = static_cast<std::size_t>(settings.image_size);
  RenderedViews out;
  out.views = views;
  out.image_size = settings.image_size;
  out.points = n;
  out.images.resize(static_cast<std::size_t>(views) * s * s * 3);
  out.pixels.resize(static_cast<std::size_t>(views) * n * 2);
  out.visible.resize(static_cast<std::size_t>(views) * n);

  const unsigned workers = detail::worker_count(threads, static_cast<std::size_t>(views));
  std::atomic<int> next{0};
  auto worker = [&]() {
    ViewWork work;
    for (int v = next++; v < views; v = next++) render_one_view(xyz, n, settings, rots[v], v, out, work);
  };
  detail::run_workers(workers, worker);
  if (fallback) apply_visibility_fallback(out.visible.data(), views, n);
  return out;
}

}  // namespace align3d
