// align3d .npy reader and writer (NumPy format versions 1.0, 2.0 and 3.0; little-endian only).
//
// Hand-written: Debian ships no C++ .npy library. Reads float32/float64/int64/int32/uint8/bool
// arrays in C or Fortran order (returned in C order) and refuses truncated files, bad magic or
// headers, big-endian or object dtypes, and shapes whose byte size overflows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace align3d {

/// A .npy problem. what() is "PATH: problem" (or just the problem when there is no path);
/// problem() is the text after "PATH: ".
class NpyError : public std::runtime_error {
 public:
  NpyError(const std::string& path, const std::string& problem);
  const std::string& problem() const { return problem_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string problem_;
};

/// Element types the reader and writer know (numpy descr: <f4 <f8 <i8 <i4 |u1 |b1).
enum class NpyType { f32, f64, i64, i32, u8, boolean };

/// An array in C order: data holds count() elements of `type`, little-endian bytes.
struct NpyArray {
  NpyType type = NpyType::f32;
  std::vector<std::size_t> shape;
  std::vector<std::uint8_t> data;
  std::size_t count() const;
};

/// File bytes quoted in a one-line message: outside printable ASCII (and backslash) as \xNN, at
/// most 80 characters + "..." (Python: data/point_files.printable).
std::string printable(const std::string& text);

/// Parse .npy bytes (`name` only labels errors). Fortran-order arrays are transposed to C order.
NpyArray parse_npy(const std::uint8_t* bytes, std::size_t size, const std::string& name = "");

/// Read and parse a .npy file; NpyError for a missing, unreadable or malformed file.
NpyArray read_npy(const std::string& path);

/// Element values converted to f32 / f64 / i64 (numpy astype: round to nearest; bool -> 0/1).
/// Converting floats to int64 throws NpyError.
std::vector<float> npy_as_f32(const NpyArray& array);
std::vector<double> npy_as_f64(const NpyArray& array);
std::vector<std::int64_t> npy_as_i64(const NpyArray& array);

/// A point file: a 2-D (N,3) numeric array converted to f32 (no validity filter; see
/// drop_invalid_rows in geometry.hpp). NpyError("PATH: ...") for other shapes or dtypes.
std::vector<float> read_npy_points(const std::string& path, std::size_t* rows);
/// The same from the file's bytes (`path` labels errors).
std::vector<float> parse_npy_points(const std::uint8_t* bytes, std::size_t size, const std::string& path,
                                    std::size_t* rows);

/// The bytes of a version 1.0 .npy (C order, little-endian) of `count(shape)` elements at data.
std::vector<std::uint8_t> encode_npy(NpyType type, const std::vector<std::size_t>& shape, const void* data);

/// Write a .npy atomically (PATH.tmp-<pid> then rename); NpyError on failure.
void write_npy(const std::string& path, NpyType type, const std::vector<std::size_t>& shape, const void* data);

}  // namespace align3d
