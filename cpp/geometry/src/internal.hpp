// Helpers shared by the geometry sources (not installed, not part of the public API).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

namespace align3d {
namespace detail {

/// double -> int64 as x86 cvttsd2si (and numba's fptosi there): truncation, and INT64_MIN for NaN
/// or out-of-range values. The reference relies on it for degenerate clouds (spec §5.9).
inline std::int64_t x86_to_i64(double d) {
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(d);
}

/// x86_to_i64(std::floor(d)) without the floating-point floor (one truncating conversion).
inline std::int64_t floor_to_i64(double d) {
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return std::numeric_limits<std::int64_t>::min();
  const std::int64_t i = static_cast<std::int64_t>(d);  // truncation toward zero, exact in range
  return static_cast<double>(i) > d ? i - 1 : i;
}

/// x86_to_i64(std::ceil(d)) likewise (doubles near 2^63 are integers, so the result stays in range).
inline std::int64_t ceil_to_i64(double d) {
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return std::numeric_limits<std::int64_t>::min();
  const std::int64_t i = static_cast<std::int64_t>(d);
  return static_cast<double>(i) < d ? i + 1 : i;
}

/// double -> float rounded to nearest, with overflow to +-inf as IEEE hardware does (a plain cast of
/// an out-of-range double is undefined behaviour in C++).
inline float to_f32(double d) {
  if (std::isfinite(d) && std::fabs(d) > static_cast<double>(FLT_MAX)) {
    const bool to_inf = std::fabs(d) >= static_cast<double>(FLT_MAX) + std::ldexp(1.0, 103);  // + half an ulp
    const float mag = to_inf ? std::numeric_limits<float>::infinity() : FLT_MAX;
    return d < 0 ? -mag : mag;
  }
  return static_cast<float>(d);
}

/// a - b with two's-complement wrap-around (numba int64 arithmetic), without signed-overflow UB.
inline std::int64_t wrap_sub(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b));
}

/// Worker threads to use: `requested` (0 = hardware concurrency), at most `tasks`, at least 1.
inline unsigned worker_count(unsigned requested, std::size_t tasks) {
  unsigned n = requested ? requested : std::max(1u, std::thread::hardware_concurrency());
  if (tasks < n) n = static_cast<unsigned>(std::max<std::size_t>(tasks, 1));
  return n;
}

/// Run fn on `workers` threads (the calling thread is one of them), join them, and rethrow the
/// first exception any of them raised.
template <typename Fn>
void run_workers(unsigned workers, Fn& fn) {
  std::exception_ptr error;
  std::mutex lock;
  auto guarded = [&]() {
    try {
      fn();
    } catch (...) {
      std::lock_guard<std::mutex> hold(lock);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < workers; ++t) pool.emplace_back(guarded);
  guarded();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace detail
}  // namespace align3d
