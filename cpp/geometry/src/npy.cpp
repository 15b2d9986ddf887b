// .npy reader and writer (hand-written; see npy.hpp).
#include "align3d/npy.hpp"
#include "internal.hpp"

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include <unistd.h>

namespace align3d {

std::string printable(const std::string& text) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char ch : text) {
    if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
      out += static_cast<char>(ch);
    } else {
      out += "\\x";
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  return out.size() > 80 ? out.substr(0, 80) + "..." : out;
}

namespace {

const char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;

std::string join_path(const std::string& path, const std::string& problem) {
  return path.empty() ? problem : path + ": " + problem;
}

std::size_t item_size(NpyType t) {
  switch (t) {
    case NpyType::f32: return 4;
    case NpyType::f64: return 8;
    case NpyType::i64: return 8;
    case NpyType::i32: return 4;
    case NpyType::u8: return 1;
    case NpyType::boolean: return 1;
  }
  return 1;
}

const char* descr_of(NpyType t) {
  switch (t) {
    case NpyType::f32: return "<f4";
    case NpyType::f64: return "<f8";
    case NpyType::i64: return "<i8";
    case NpyType::i32: return "<i4";
    case NpyType::u8: return "|u1";
    case NpyType::boolean: return "|b1";
  }
  return "";
}

const char* type_name(NpyType t) {
  switch (t) {
    case NpyType::f32: return "float32";
    case NpyType::f64: return "float64";
    case NpyType::i64: return "int64";
    case NpyType::i32: return "int32";
    case NpyType::u8: return "uint8";
    case NpyType::boolean: return "bool";
  }
  return "?";
}

// A parse failure inside the header; turned into NpyError with the file name by parse_npy.
struct HeaderError {
  std::string problem;
};

// Minimal parser of the header's Python dict literal: {'descr': '<f4', 'fortran_order': False,
// 'shape': (3, 4), }.
class HeaderParser {
 public:
  explicit HeaderParser(const std::string& text) : s_(text) {}

  void parse(std::string& descr, bool& fortran, std::vector<std::size_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    skip();
    expect('{');
    for (;;) {
      skip();
      if (peek() == '}') {
        ++i_;
        break;
      }
      std::string key = string_literal();
      skip();
      expect(':');
      skip();
      if (key == "descr") {
        if (peek() != '\'' && peek() != '"')
          fail("descr is not a simple dtype string (structured arrays are not supported)");
        descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = boolean();
        have_fortran = true;
      } else if (key == "shape") {
        shape = tuple();
        have_shape = true;
      } else {
        fail("unexpected header key '" + printable(key) + "'");
      }
      skip();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      skip();
      expect('}');
      break;
    }
    skip();
    if (i_ != s_.size()) fail("trailing text after the header dictionary");
    if (!have_descr || !have_fortran || !have_shape) fail("header lacks descr, fortran_order or shape");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw HeaderError{"bad header: " + what}; }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string_literal() {
    char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != q) out += s_[i_++];
    if (i_ >= s_.size()) fail("unterminated string");
    ++i_;
    return out;
  }
  bool boolean() {
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    fail("fortran_order must be True or False");
  }
  std::vector<std::size_t> tuple() {
    expect('(');
    std::vector<std::size_t> dims;
    for (;;) {
      skip();
      if (peek() == ')') {
        ++i_;
        break;
      }
      if (peek() < '0' || peek() > '9') fail("shape must be a tuple of non-negative integers");
      std::size_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        std::size_t digit = static_cast<std::size_t>(peek() - '0');
        if (v > (std::numeric_limits<std::size_t>::max() - digit) / 10) fail("shape dimension too large");
        v = v * 10 + digit;
        ++i_;
      }
      while (peek() == 'L') ++i_;  // Python 2 longs
      dims.push_back(v);
      skip();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      skip();
      expect(')');
      break;
    }
    return dims;
  }

  const std::string& s_;
  std::size_t i_ = 0;
};

NpyType type_from_descr(const std::string& d) {
  if (d.size() >= 2 && d[0] == '>' && d.substr(1) != "u1" && d.substr(1) != "b1" && d.substr(1) != "i1")
    throw HeaderError{"big-endian dtype '" + printable(d) + "' is not supported"};
  std::string body = (d.size() >= 1 && (d[0] == '<' || d[0] == '|' || d[0] == '=')) ? d.substr(1) : d;
  bool one_byte_order = d.size() >= 1 && (d[0] == '|' || d[0] == '<' || d[0] == '>' || d[0] == '=');
  if (d.size() >= 1 && d[0] == '<') {
    if (body == "f4") return NpyType::f32;
    if (body == "f8") return NpyType::f64;
    if (body == "i8") return NpyType::i64;
    if (body == "i4") return NpyType::i32;
  }
  if (one_byte_order) {
    if (body == "u1") return NpyType::u8;
    if (body == "b1") return NpyType::boolean;
  }
  throw HeaderError{"unsupported dtype '" + printable(d) +
                    "' (float32, float64, int64, int32, uint8 or bool, little-endian)"};
}

template <typename T>
T load_le(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the library targets little-endian hosts (x86-64, aarch64)
  return v;
}

// Transpose Fortran-ordered element bytes into C order.
std::vector<std::uint8_t> fortran_to_c(const std::uint8_t* src, const std::vector<std::size_t>& shape,
                                       std::size_t count, std::size_t item) {
  std::vector<std::uint8_t> out(count * item);
  const std::size_t nd = shape.size();
  std::vector<std::size_t> fstride(nd), idx(nd, 0);
  std::size_t s = 1;
  for (std::size_t k = 0; k < nd; ++k) {
    fstride[k] = s;
    s *= shape[k];
  }
  for (std::size_t c = 0; c < count; ++c) {
    std::size_t off = 0;
    for (std::size_t k = 0; k < nd; ++k) off += idx[k] * fstride[k];
    std::memcpy(out.data() + c * item, src + off * item, item);
    for (std::size_t k = nd; k-- > 0;) {  // C order: last index fastest
      if (++idx[k] < shape[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

std::string shape_text(const std::vector<std::size_t>& shape) {
  std::ostringstream o;
  o << '(';
  for (std::size_t k = 0; k < shape.size(); ++k) o << (k ? ", " : "") << shape[k];
  if (shape.size() == 1) o << ',';
  o << ')';
  return o.str();
}

float double_to_float(double d) { return detail::to_f32(d); }  // numpy astype(float32)

template <typename Out, typename Conv>
std::vector<Out> convert(const NpyArray& a, Conv conv) {
  const std::size_t n = a.count();
  std::vector<Out> out(n);
  const std::uint8_t* p = a.data.data();
  for (std::size_t i = 0; i < n; ++i) {
    switch (a.type) {
      case NpyType::f32: out[i] = conv(static_cast<double>(load_le<float>(p + 4 * i))); break;
      case NpyType::f64: out[i] = conv(load_le<double>(p + 8 * i)); break;
      case NpyType::i64: out[i] = static_cast<Out>(load_le<std::int64_t>(p + 8 * i)); break;
      case NpyType::i32: out[i] = static_cast<Out>(load_le<std::int32_t>(p + 4 * i)); break;
      case NpyType::u8: out[i] = static_cast<Out>(p[i]); break;
      case NpyType::boolean: out[i] = static_cast<Out>(p[i] != 0); break;
    }
  }
  return out;
}

}  // namespace

NpyError::NpyError(const std::string& path, const std::string& problem)
    : std::runtime_error(join_path(path, problem)), path_(path), problem_(problem) {}

std::size_t NpyArray::count() const {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  return n;
}

NpyArray parse_npy(const std::uint8_t* bytes, std::size_t size, const std::string& name) {
  if (size < kMagicLen + 2 || std::memcmp(bytes, kMagic, kMagicLen) != 0)
    throw NpyError(name, "not a .npy file (bad magic)");
  const int major = bytes[6];
  std::size_t header_len = 0, prefix = 0;
  if (major == 1) {
    if (size < 10) throw NpyError(name, "truncated .npy header");
    header_len = static_cast<std::size_t>(bytes[8]) | (static_cast<std::size_t>(bytes[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw NpyError(name, "truncated .npy header");
    header_len = static_cast<std::size_t>(bytes[8]) | (static_cast<std::size_t>(bytes[9]) << 8) |
                 (static_cast<std::size_t>(bytes[10]) << 16) | (static_cast<std::size_t>(bytes[11]) << 24);
    prefix = 12;
  } else {
    throw NpyError(name, "unsupported .npy format version " + std::to_string(major));
  }
  if (header_len > size - prefix) throw NpyError(name, "truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(bytes + prefix), header_len);
  NpyArray out;
  std::string descr;
  bool fortran = false;
  try {
    HeaderParser(header).parse(descr, fortran, out.shape);
    out.type = type_from_descr(descr);
  } catch (const HeaderError& e) {
    throw NpyError(name, e.problem);
  }
  const std::size_t item = item_size(out.type);
  std::size_t count = 1;
  for (std::size_t d : out.shape) {
    if (d != 0 && count > std::numeric_limits<std::size_t>::max() / d)
      throw NpyError(name, "shape " + shape_text(out.shape) + " is too large");
    count *= d;
  }
  if (count > std::numeric_limits<std::size_t>::max() / item)
    throw NpyError(name, "shape " + shape_text(out.shape) + " is too large");
  const std::size_t need = count * item, have = size - prefix - header_len;
  if (have < need)
    throw NpyError(name, "truncated .npy: shape " + shape_text(out.shape) + " needs " + std::to_string(need) +
                             " data bytes, the file holds " + std::to_string(have));
  const std::uint8_t* data = bytes + prefix + header_len;
  if (fortran && out.shape.size() > 1) out.data = fortran_to_c(data, out.shape, count, item);
  else
    out.data.assign(data, data + need);
  return out;
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw NpyError(path, "cannot open .npy file");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw NpyError(path, "read error");
  return parse_npy(bytes.data(), bytes.size(), path);
}

std::vector<float> npy_as_f32(const NpyArray& a) {
  return convert<float>(a, [](double d) { return double_to_float(d); });
}

std::vector<double> npy_as_f64(const NpyArray& a) {
  return convert<double>(a, [](double d) { return d; });
}

std::vector<std::int64_t> npy_as_i64(const NpyArray& a) {
  if (a.type == NpyType::f32 || a.type == NpyType::f64)
    throw NpyError("", std::string("expected an integer array, got ") + type_name(a.type));
  return convert<std::int64_t>(a, [](double) { return std::int64_t{0}; });
}

std::vector<float> parse_npy_points(const std::uint8_t* bytes, std::size_t size, const std::string& path,
                                    std::size_t* rows) {
  NpyArray a;
  try {
    a = parse_npy(bytes, size, path);
  } catch (const NpyError& e) {
    throw NpyError(path, "unreadable .npy (" + e.problem() + ")");
  }
  if (a.shape.size() != 2 || a.shape[1] != 3 || a.type == NpyType::boolean)
    throw NpyError(path, std::string(".npy must hold an (N,3) numeric array, got ") + type_name(a.type) + " " +
                             shape_text(a.shape));
  if (rows) *rows = a.shape[0];
  return npy_as_f32(a);
}

std::vector<float> read_npy_points(const std::string& path, std::size_t* rows) {
  std::vector<std::uint8_t> bytes;
  try {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw NpyError(path, "cannot open .npy file");
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) throw NpyError(path, "read error");
  } catch (const NpyError& e) {
    throw NpyError(path, "unreadable .npy (" + e.problem() + ")");
  }
  return parse_npy_points(bytes.data(), bytes.size(), path, rows);
}

std::vector<std::uint8_t> encode_npy(NpyType type, const std::vector<std::size_t>& shape, const void* data) {
  std::string header =
      std::string("{'descr': '") + descr_of(type) + "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  // Pad with spaces so that magic + 4 + header + '\n' is a multiple of 64 (numpy's alignment).
  const std::size_t unpadded = kMagicLen + 4 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 65535) throw NpyError("", "shape too long for a version 1.0 header");
  std::size_t count = 1;
  for (std::size_t d : shape) count *= d;
  const std::size_t nbytes = count * item_size(type);
  const std::size_t prefix = kMagicLen + 4;
  std::vector<std::uint8_t> out(prefix + header.size() + nbytes);
  std::memcpy(out.data(), kMagic, kMagicLen);
  out[6] = 1;  // format version 1.0
  out[7] = 0;
  out[8] = static_cast<std::uint8_t>(header.size() & 0xff);
  out[9] = static_cast<std::uint8_t>(header.size() >> 8);
  std::memcpy(out.data() + prefix, header.data(), header.size());
  if (nbytes) std::memcpy(out.data() + prefix + header.size(), data, nbytes);
  return out;
}

void write_npy(const std::string& path, NpyType type, const std::vector<std::size_t>& shape, const void* data) {
  const std::vector<std::uint8_t> bytes = encode_npy(type, shape, data);
  const std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw NpyError(path, "cannot write (" + std::string(std::strerror(errno)) + ")");
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw NpyError(path, "write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw NpyError(path, "cannot rename into place (" + std::string(std::strerror(errno)) + ")");
  }
}

}  // namespace align3d
