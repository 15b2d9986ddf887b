// Hand-written .ply/.pcd readers (x, y, z only) and the libtiff reader of organized xyz grids.
// The files are untrusted: every count is checked against the bytes really present before use.
#include "readers.hpp"

#include <tiffio.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <set>
#include <sstream>

#include "align3d/inspector.hpp"
#include "align3d/npy.hpp"

namespace align3d {
namespace fs = std::filesystem;
namespace {

constexpr std::uint64_t kMaxTiffCells = std::uint64_t{1} << 24;  // 4096 x 4096 (MVTec: 800 x 800)

[[noreturn]] void fail(const std::string& path, const std::string& problem) { throw Error(path + ": " + problem); }

// Why `path` cannot be read as a point file, or "" for a regular file (Python: point_files.path_problem).
std::string path_problem(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec && ec.value() == ELOOP) return "symbolic link loop";
  if (st.type() == fs::file_type::not_found || (ec && (ec.value() == ENOENT || ec.value() == ENOTDIR)))
    return "point file not found";
  if (ec) return "cannot open the point file (" + std::string(std::strerror(ec.value())) + ")";
  if (st.type() != fs::file_type::regular) return "not a regular file";
  return "";
}

// The bytes of a regular file (FIFOs, devices, folders, link loops refused before opening).
std::string read_all(const std::string& path) {
  const std::string problem = path_problem(path);
  if (!problem.empty()) fail(path, problem);
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) fail(path, "cannot open the point file (" + std::string(std::strerror(errno)) + ")");
  std::string out;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f.get())) > 0;) out.append(buf, n);
  if (std::ferror(f.get())) fail(path, "cannot open the point file (" + std::string(std::strerror(errno)) + ")");
  return out;
}

// Numeric scalar types of PLY (char..double) and PCD (TYPE x SIZE).
enum class Scalar { i8, u8, i16, u16, i32, u32, f32, f64 };

int scalar_size(Scalar t) {
  switch (t) {
    case Scalar::i8:
    case Scalar::u8: return 1;
    case Scalar::i16:
    case Scalar::u16: return 2;
    case Scalar::i32:
    case Scalar::u32:
    case Scalar::f32: return 4;
    case Scalar::f64: return 8;
  }
  return 0;
}

template <typename T>
T load(const char* p, bool swap) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if (swap) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

double load_scalar(Scalar t, const char* p, bool swap) {
  switch (t) {
    case Scalar::i8: return load<std::int8_t>(p, swap);
    case Scalar::u8: return load<std::uint8_t>(p, swap);
    case Scalar::i16: return load<std::int16_t>(p, swap);
    case Scalar::u16: return load<std::uint16_t>(p, swap);
    case Scalar::i32: return load<std::int32_t>(p, swap);
    case Scalar::u32: return load<std::uint32_t>(p, swap);
    case Scalar::f32: return load<float>(p, swap);
    case Scalar::f64: return load<double>(p, swap);
  }
  return 0;
}

bool ply_scalar(const std::string& name, Scalar& out) {
  static const std::pair<const char*, Scalar> names[] = {
      {"char", Scalar::i8},   {"int8", Scalar::i8},     {"uchar", Scalar::u8},   {"uint8", Scalar::u8},
      {"short", Scalar::i16}, {"int16", Scalar::i16},   {"ushort", Scalar::u16}, {"uint16", Scalar::u16},
      {"int", Scalar::i32},   {"int32", Scalar::i32},   {"uint", Scalar::u32},   {"uint32", Scalar::u32},
      {"float", Scalar::f32}, {"float32", Scalar::f32}, {"double", Scalar::f64}, {"float64", Scalar::f64}};
  for (const auto& [n, t] : names)
    if (name == n) {
      out = t;
      return true;
    }
  return false;
}

// Parses a non-negative element/point count; refuses signs, junk and values past 2^40.
bool parse_count(const std::string& s, std::uint64_t& out) {
  if (s.empty() || s.size() > 13 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return false;
  out = std::stoull(s);
  return out <= (std::uint64_t{1} << 40);
}

// Keeps rows whose three coordinates are finite after the f64 -> f32 cast (Python: np.isfinite on f32).
void push_point(Cloud& c, double x, double y, double z) {
  const float f[3] = {static_cast<float>(x), static_cast<float>(y), static_cast<float>(z)};
  if (std::isfinite(f[0]) && std::isfinite(f[1]) && std::isfinite(f[2])) c.xyz.insert(c.xyz.end(), f, f + 3);
}

void check_not_empty(const Cloud& c, std::uint64_t declared, const std::string& path) {
  if (declared == 0) fail(path, "unreadable or empty point cloud (the header declares no points)");
  if (c.size() == 0) fail(path, "point cloud has no finite point");
}

// A line-by-line cursor over the header (both formats: newline-terminated ASCII lines).
struct Lines {
  const std::string& text;
  size_t pos = 0;
  bool next(std::string& line) {
    if (pos >= text.size()) return false;
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    pos = std::min(end + 1, text.size());
    return true;
  }
};

std::vector<std::string> split(const std::string& line) {
  std::istringstream s(line);
  std::vector<std::string> out;
  for (std::string tok; s >> tok;) out.push_back(tok);
  return out;
}

// A decimal number, inf, infinity or nan (no hex, no nan(...), no underscores): the tokens both
// readers accept (Python: point_files.is_number).
bool is_number(const std::string& tok) {
  size_t i = 0;
  const size_t n = tok.size();
  if (i < n && (tok[i] == '+' || tok[i] == '-')) ++i;
  std::string rest = tok.substr(i);
  std::transform(rest.begin(), rest.end(), rest.begin(), [](unsigned char c) { return std::tolower(c); });
  if (rest == "inf" || rest == "infinity" || rest == "nan") return true;
  auto digits = [&]() {
    const size_t start = i;
    while (i < n && tok[i] >= '0' && tok[i] <= '9') ++i;
    return i - start;
  };
  size_t mant = digits();
  if (i < n && tok[i] == '.') {
    ++i;
    mant += digits();
  }
  if (mant == 0) return false;
  if (i < n && (tok[i] == 'e' || tok[i] == 'E')) {
    ++i;
    if (i < n && (tok[i] == '+' || tok[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == n;
}

// Strict double parse of one number token (strtod: correctly rounded, like Python's float()).
bool parse_double(const std::string& tok, double& out) {
  if (!is_number(tok)) return false;
  char* end = nullptr;
  out = std::strtod(tok.c_str(), &end);
  return end == tok.c_str() + tok.size();
}

// ---------------------------------------------------------------------------------------- PLY
struct PlyProperty {
  std::string name;
  Scalar type = Scalar::f32;
  bool is_list = false;
  Scalar count_type = Scalar::u8;
};
struct PlyElement {
  std::string name;
  std::uint64_t count = 0;
  std::vector<PlyProperty> props;
};

}  // namespace

Cloud read_ply(const std::string& path) {
  const std::string data = read_all(path);
  Lines lines{data};
  std::string line;
  if (!lines.next(line) || line != "ply") fail(path, "not a PLY file (no 'ply' magic line)");
  enum { ascii, le, be } format = ascii;
  bool have_format = false, ended = false;
  std::vector<PlyElement> elements;
  while (lines.next(line)) {
    const auto tok = split(line);
    if (tok.empty() || tok[0] == "comment" || tok[0] == "obj_info") continue;
    if (tok[0] == "end_header") {
      ended = true;
      break;
    }
    if (tok[0] == "format" && tok.size() == 3) {
      have_format = true;
      if (tok[1] == "ascii") format = ascii;
      else if (tok[1] == "binary_little_endian")
        format = le;
      else if (tok[1] == "binary_big_endian")
        format = be;
      else
        fail(path, "malformed PLY header (unknown format '" + printable(tok[1]) + "')");
    } else if (tok[0] == "element" && tok.size() == 3) {
      PlyElement e;
      e.name = tok[1];
      if (!parse_count(tok[2], e.count))
        fail(path, "malformed PLY header (bad element count '" + printable(tok[2]) + "')");
      elements.push_back(e);
    } else if (tok[0] == "property" && !elements.empty()) {
      PlyProperty p;
      if (tok.size() == 5 && tok[1] == "list") {
        p.is_list = true;
        if (!ply_scalar(tok[2], p.count_type) || !ply_scalar(tok[3], p.type) || p.count_type == Scalar::f32 ||
            p.count_type == Scalar::f64)
          fail(path, "malformed PLY header (bad list property '" + printable(line) + "')");
        p.name = tok[4];
      } else if (tok.size() == 3 && ply_scalar(tok[1], p.type)) {
        p.name = tok[2];
      } else {
        fail(path, "malformed PLY header (bad property line '" + printable(line) + "')");
      }
      elements.back().props.push_back(p);
    } else {
      fail(path, "malformed PLY header (unexpected line '" + printable(line) + "')");
    }
  }
  if (!ended) fail(path, "malformed PLY header (no end_header)");
  if (!have_format) fail(path, "malformed PLY header (no format line)");
  const auto vit =
      std::find_if(elements.begin(), elements.end(), [](const PlyElement& e) { return e.name == "vertex"; });
  if (vit == elements.end()) fail(path, "unreadable or empty point cloud (PLY has no vertex element)");
  int ix = -1, iy = -1, iz = -1;
  for (size_t k = 0; k < vit->props.size(); ++k) {
    const auto& p = vit->props[k];
    if (p.is_list) continue;
    if (p.name == "x") ix = static_cast<int>(k);
    if (p.name == "y") iy = static_cast<int>(k);
    if (p.name == "z") iz = static_cast<int>(k);
  }
  if (ix < 0 || iy < 0 || iz < 0) fail(path, "PLY vertex element lacks x, y or z");

  Cloud cloud;
  const bool swap = format == be;  // this reader assumes a little-endian host (x86, ARM)
  size_t pos = lines.pos;
  for (auto e = elements.begin(); e != elements.end() && e <= vit; ++e) {
    const bool want = e == vit;
    const std::string name = printable(e->name);
    const std::string short_rows =
        "header promises " + std::to_string(e->count) + " " + name + " rows, the file holds ";
    if (want) cloud.xyz.reserve(3 * std::min<std::uint64_t>(e->count, data.size() / 6));  // <= 2x the file
    if (format != ascii && e->props.empty()) continue;  // rows of no bytes: nothing to walk
    std::vector<double> vals(e->props.size());
    for (std::uint64_t i = 0; i < e->count; ++i) {
      if (format == ascii) {
        std::string row;
        Lines rest{data, pos};
        bool got = false;
        while ((got = rest.next(row)) && split(row).empty()) {
        }
        if (!got) fail(path, short_rows + std::to_string(i));
        pos = rest.pos;
        const auto tok = split(row);
        const std::string bad = "malformed PLY " + name + " row " + std::to_string(i);
        size_t t = 0;
        for (size_t k = 0; k < e->props.size(); ++k) {
          const auto& p = e->props[k];
          double v = 0;
          if (t >= tok.size() || !parse_double(tok[t], v)) fail(path, bad);
          ++t;
          if (p.is_list) {
            if (!(v >= 0 && v <= 1e6 && v == std::floor(v)))
              fail(path, "malformed PLY list length in " + name + " row " + std::to_string(i));
            const size_t items = static_cast<size_t>(v);
            for (size_t j = t; j < t + items; ++j)
              if (j >= tok.size() || !is_number(tok[j])) fail(path, bad);
            t += items;
          }
          vals[k] = v;
        }
        if (t != tok.size()) fail(path, bad);  // every row holds exactly what its properties need
      } else {
        for (size_t k = 0; k < e->props.size(); ++k) {
          const auto& p = e->props[k];
          if (p.is_list) {
            const int cs = scalar_size(p.count_type);
            if (data.size() - pos < static_cast<size_t>(cs)) fail(path, short_rows + std::to_string(i));
            const double len = load_scalar(p.count_type, data.data() + pos, swap);
            pos += cs;
            if (len < 0) fail(path, "malformed PLY list length in " + name + " row " + std::to_string(i));
            const auto bytes = static_cast<std::uint64_t>(len) * scalar_size(p.type);
            if (data.size() - pos < bytes) fail(path, short_rows + std::to_string(i));
            pos += bytes;
            vals[k] = len;
          } else {
            const int s = scalar_size(p.type);
            if (data.size() - pos < static_cast<size_t>(s)) fail(path, short_rows + std::to_string(i));
            vals[k] = load_scalar(p.type, data.data() + pos, swap);
            pos += s;
          }
        }
      }
      if (want) push_point(cloud, vals[ix], vals[iy], vals[iz]);
    }
  }
  check_not_empty(cloud, vit->count, path);
  return cloud;
}

namespace {

// LZF decompression (liblzf format, used by PCL's binary_compressed PCD).
bool lzf_decompress(const unsigned char* in, size_t in_len, unsigned char* out, size_t out_len) {
  size_t ip = 0, op = 0;
  while (ip < in_len) {
    unsigned ctrl = in[ip++];
    if (ctrl < 32) {  // literal run of ctrl+1 bytes
      const size_t n = ctrl + 1;
      if (ip + n > in_len || op + n > out_len) return false;
      std::memcpy(out + op, in + ip, n);
      ip += n;
      op += n;
    } else {  // back reference
      size_t len = ctrl >> 5;
      if (len == 7) {
        if (ip >= in_len) return false;
        len += in[ip++];
      }
      if (ip >= in_len) return false;
      const size_t back = ((ctrl & 0x1f) << 8) + in[ip++] + 1;
      len += 2;
      if (back > op || op + len > out_len) return false;
      for (size_t k = 0; k < len; ++k, ++op) out[op] = out[op - back];
    }
  }
  return op == out_len;
}

}  // namespace

Cloud read_pcd(const std::string& path) {
  const std::string data = read_all(path);
  Lines lines{data};
  std::string line, mode;
  std::vector<std::string> fields;
  std::vector<int> sizes, counts;
  std::vector<char> types;
  std::uint64_t width = 0, height = 1, points = 0;
  bool have_points = false;
  while (lines.next(line)) {
    const auto tok = split(line);
    if (tok.empty() || tok[0][0] == '#') continue;
    const std::string& key = tok[0];
    if (key == "VERSION" || key == "VIEWPOINT") continue;
    if (key == "FIELDS" || key == "COLUMNS") {
      fields.assign(tok.begin() + 1, tok.end());
    } else if (key == "SIZE" || key == "COUNT") {
      auto& dst = key == "SIZE" ? sizes : counts;
      dst.clear();
      for (size_t k = 1; k < tok.size(); ++k) {
        std::uint64_t v = 0;
        if (!parse_count(tok[k], v) || v == 0 || v > 65536) fail(path, "malformed PCD header (bad " + key + ")");
        dst.push_back(static_cast<int>(v));
      }
    } else if (key == "TYPE") {
      types.clear();
      for (size_t k = 1; k < tok.size(); ++k) {
        if (tok[k].size() != 1 || std::string("FIU").find(tok[k][0]) == std::string::npos)
          fail(path, "malformed PCD header (bad TYPE)");
        types.push_back(tok[k][0]);
      }
    } else if (key == "WIDTH" || key == "HEIGHT" || key == "POINTS") {
      std::uint64_t v = 0;
      if (tok.size() != 2 || !parse_count(tok[1], v)) fail(path, "malformed PCD header (bad " + key + ")");
      (key == "WIDTH" ? width : key == "HEIGHT" ? height : points) = v;
      if (key == "POINTS") have_points = true;
    } else if (key == "DATA") {
      if (tok.size() != 2) fail(path, "malformed PCD header (bad DATA line)");
      mode = tok[1];
      break;
    } else {
      fail(path, "malformed PCD header (unexpected line '" + printable(line) + "')");
    }
  }
  if (mode.empty()) fail(path, "malformed PCD header (no DATA line)");
  if (mode != "ascii" && mode != "binary" && mode != "binary_compressed")
    fail(path, "malformed PCD header (unknown DATA '" + printable(mode) + "')");
  if (fields.empty() || sizes.size() != fields.size() || types.size() != fields.size())
    fail(path, "malformed PCD header (FIELDS, SIZE and TYPE differ in length)");
  if (counts.empty()) counts.assign(fields.size(), 1);
  if (counts.size() != fields.size()) fail(path, "malformed PCD header (COUNT differs in length from FIELDS)");
  if (!have_points) {
    if (height != 0 && width > (std::uint64_t{1} << 40) / height)
      fail(path, "malformed PCD header (WIDTH x HEIGHT is too large)");
    points = width * height;
  }
  int fx = -1, fy = -1, fz = -1;
  std::vector<Scalar> st(fields.size());
  std::vector<size_t> offset(fields.size()), value_offset(fields.size());
  size_t stride = 0, values = 0;
  for (size_t k = 0; k < fields.size(); ++k) {
    const char t = types[k];
    const int s = sizes[k];
    if (t == 'F' && s == 4) st[k] = Scalar::f32;
    else if (t == 'F' && s == 8)
      st[k] = Scalar::f64;
    else if (t == 'I' && (s == 1 || s == 2 || s == 4))
      st[k] = s == 1 ? Scalar::i8 : s == 2 ? Scalar::i16 : Scalar::i32;
    else if (t == 'U' && (s == 1 || s == 2 || s == 4))
      st[k] = s == 1 ? Scalar::u8 : s == 2 ? Scalar::u16 : Scalar::u32;
    else if ((t == 'I' || t == 'U') && s == 8)
      st[k] = Scalar::f64;  // 8-byte integers: skipped (refused as x/y/z)
    else
      fail(path, "malformed PCD header (unsupported TYPE/SIZE " + std::string(1, t) + std::to_string(s) + ")");
    if (fields[k] == "x") fx = static_cast<int>(k);
    if (fields[k] == "y") fy = static_cast<int>(k);
    if (fields[k] == "z") fz = static_cast<int>(k);
    offset[k] = stride;
    value_offset[k] = values;
    stride += static_cast<size_t>(s) * counts[k];
    values += counts[k];
  }
  if (fx < 0 || fy < 0 || fz < 0) fail(path, "PCD has no x, y and z fields");
  for (int f : {fx, fy, fz})
    if ((types[f] == 'I' || types[f] == 'U') && sizes[f] == 8)
      fail(path, "malformed PCD header (64-bit integer coordinates)");
  Cloud cloud;
  const std::string promise = "header promises " + std::to_string(points) + " points, the file holds ";
  if (mode == "ascii") {
    size_t pos = lines.pos;
    cloud.xyz.reserve(3 * std::min<std::uint64_t>(points, data.size() / 6));  // rows are counted as read
    for (std::uint64_t i = 0; i < points; ++i) {
      std::string row;
      Lines rest{data, pos};
      bool got = false;
      while ((got = rest.next(row)) && split(row).empty()) {
      }
      if (!got) fail(path, promise + std::to_string(i));
      pos = rest.pos;
      const auto tok = split(row);
      if (tok.size() != values)
        fail(path, "malformed PCD point row " + std::to_string(i) + " (" + std::to_string(tok.size()) +
                       " values, FIELDS/COUNT need " + std::to_string(values) + ")");
      for (const auto& t : tok)  // every value a number, not only x, y, z
        if (!is_number(t)) fail(path, "malformed PCD point row " + std::to_string(i) + " (a value is not a number)");
      double xyz[3];
      const int f3[3] = {fx, fy, fz};
      for (int a = 0; a < 3; ++a) parse_double(tok[value_offset[f3[a]]], xyz[a]);
      push_point(cloud, xyz[0], xyz[1], xyz[2]);
    }
  } else if (mode == "binary") {
    const size_t pos = lines.pos;
    const std::uint64_t have = stride ? (data.size() - pos) / stride : 0;
    if (have < points) fail(path, promise + std::to_string(have));
    cloud.xyz.reserve(3 * points);
    for (std::uint64_t i = 0; i < points; ++i) {
      const char* row = data.data() + pos + i * stride;
      push_point(cloud, load_scalar(st[fx], row + offset[fx], false), load_scalar(st[fy], row + offset[fy], false),
                 load_scalar(st[fz], row + offset[fz], false));
    }
  } else {  // binary_compressed: u32 compressed size, u32 raw size, LZF bytes of the field-major layout
    size_t pos = lines.pos;
    if (data.size() - pos < 8) fail(path, promise + "0 (compressed block truncated)");
    const auto csize = load<std::uint32_t>(data.data() + pos, false);
    const auto rsize = load<std::uint32_t>(data.data() + pos + 4, false);
    pos += 8;
    if (data.size() - pos < csize) fail(path, promise + "fewer (compressed block truncated)");
    if ((stride && points > 0xffffffffULL / stride) || static_cast<std::uint64_t>(rsize) != points * stride)
      fail(path, promise + std::to_string(stride ? rsize / stride : 0) + " (uncompressed size disagrees)");
    // LZF expands at most 88-fold (a 3-byte back reference yields 264 bytes): a larger claim is a
    // lie, refused before anything is allocated.
    if (static_cast<std::uint64_t>(rsize) > 88ULL * csize) fail(path, "corrupt binary_compressed PCD data (LZF)");
    std::vector<unsigned char> raw(rsize);
    if (!lzf_decompress(reinterpret_cast<const unsigned char*>(data.data() + pos), csize, raw.data(), raw.size()))
      fail(path, "corrupt binary_compressed PCD data (LZF)");
    cloud.xyz.reserve(3 * points);
    auto field_at = [&](int f, std::uint64_t i) {  // field-major: all points of field 0, then field 1...
      return load_scalar(
          st[f], reinterpret_cast<const char*>(raw.data()) + offset[f] * points + i * sizes[f] * counts[f], false);
    };
    for (std::uint64_t i = 0; i < points; ++i) push_point(cloud, field_at(fx, i), field_at(fy, i), field_at(fz, i));
  }
  check_not_empty(cloud, points, path);
  return cloud;
}

std::vector<float> read_xyz_tiff(const std::string& path, int& h, int& w) {
  {  // the magic first, before libtiff reads the file (Python: point_files.tiff_magic_problem)
    std::ifstream in(path, std::ios::binary);
    char head[4] = {0, 0, 0, 0};
    in.read(head, 4);
    const std::string magic(head, static_cast<size_t>(in.gcount()));
    static const std::string kMagics[] = {std::string("II*\0", 4), std::string("MM\0*", 4), std::string("II+\0", 4),
                                          std::string("MM\0+", 4)};
    if (std::find(std::begin(kMagics), std::end(kMagics), magic) == std::end(kMagics))
      fail(path, "unreadable tiff (not a TIFF file: bad magic)");
  }
  TIFFSetWarningHandler(nullptr);
  TIFFSetErrorHandler(nullptr);  // errors are reported as one line below, not on stderr
  std::unique_ptr<TIFF, void (*)(TIFF*)> tif(TIFFOpen(path.c_str(), "r"), &TIFFClose);
  if (!tif) fail(path, "unreadable tiff (libtiff cannot open it)");
  std::uint32_t width = 0, height = 0;
  std::uint16_t spp = 1, bits = 0, fmt = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG;
  TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &width);
  TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &height);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLEFORMAT, &fmt);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_PLANARCONFIG, &planar);
  if (spp != 3) fail(path, "xyz tiff must be HxWx3, got " + std::to_string(spp) + " sample(s) per pixel");
  if (fmt != SAMPLEFORMAT_IEEEFP || (bits != 32 && bits != 64))
    fail(path, "xyz tiff must hold floats (metres), got " + std::to_string(bits) + "-bit samples of format " +
                   std::to_string(fmt));
  if (width == 0 || height == 0 || width > 100000 || height > 100000) fail(path, "xyz tiff has an unusable size");
  // Header sizes are checked before the pixels are allocated (Python: point_files.tiff_size_problem).
  const std::uint64_t cells = static_cast<std::uint64_t>(width) * height;
  const std::string hw = std::to_string(height) + "x" + std::to_string(width);
  if (cells > kMaxTiffCells)
    fail(path, "xyz tiff of " + hw + " cells is larger than the limit of " + std::to_string(kMaxTiffCells) + " cells");
  std::uint16_t compression = COMPRESSION_NONE;
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_COMPRESSION, &compression);
  std::error_code size_ec;
  const std::uint64_t file_bytes = fs::file_size(path, size_ec);
  const std::uint64_t need = cells * spp * (bits / 8);
  if (compression == COMPRESSION_NONE && !size_ec && need > file_bytes)
    fail(path, "xyz tiff of " + hw + " cells needs " + std::to_string(need) + " data bytes, the file holds " +
                   std::to_string(file_bytes) + " (truncated?)");
  if (TIFFIsTiled(tif.get())) fail(path, "tiled tiffs are not supported (MVTec xyz tiffs are striped)");
  const tmsize_t line = TIFFScanlineSize(tif.get());
  const size_t bps = bits / 8;
  const size_t want = static_cast<size_t>(width) * bps * (planar == PLANARCONFIG_CONTIG ? 3 : 1);
  if (line <= 0 || static_cast<size_t>(line) < want) fail(path, "unreadable tiff (bad scanline size)");
  std::vector<unsigned char> buf(line);
  std::vector<float> out(static_cast<size_t>(width) * height * 3);
  const int planes = planar == PLANARCONFIG_CONTIG ? 1 : 3;
  for (int s = 0; s < planes; ++s) {
    for (std::uint32_t r = 0; r < height; ++r) {
      if (TIFFReadScanline(tif.get(), buf.data(), r, static_cast<std::uint16_t>(s)) < 0)
        fail(path, "unreadable tiff (truncated or corrupt at row " + std::to_string(r) + ")");
      for (std::uint32_t c = 0; c < width; ++c) {
        for (int k = 0; k < 3; ++k) {
          if (planes == 3 && k != s) continue;
          const size_t idx = planes == 1 ? (static_cast<size_t>(c) * 3 + k) : c;
          const double v = bits == 32 ? load<float>(reinterpret_cast<const char*>(buf.data()) + idx * 4, false)
                                      : load<double>(reinterpret_cast<const char*>(buf.data()) + idx * 8, false);
          out[(static_cast<size_t>(r) * width + c) * 3 + k] = static_cast<float>(v);
        }
      }
    }
  }
  h = static_cast<int>(height);
  w = static_cast<int>(width);
  const auto valid = grid_valid_mask(out.data(), h, w);
  if (std::find(valid.begin(), valid.end(), 1) == valid.end())
    fail(path, "point cloud has no valid point (all zero or NaN)");
  return out;
}

PointFile preprocess_grid(const std::vector<float>& xyz, int h, int w, const std::string& path) {
  auto valid = grid_valid_mask(xyz.data(), h, w);
  const std::string problem = mvtec_remove_background(xyz.data(), valid.data(), h, w);  // steps 1-3
  if (!problem.empty()) fail(path, problem);
  const auto grid = grid_clean_pad_resize(xyz.data(), valid.data(), h, w);
  GridPoints gp = grid_points(grid.data());
  if (gp.cloud.size() == 0) fail(path, "point cloud has no valid point (all zero or NaN)");
  return PointFile{std::move(gp.cloud), std::move(gp.grid_index)};
}

size_t count_distinct_locations(const Cloud& cloud, size_t enough) {
  std::set<std::array<float, 3>> seen;  // finite values: ordered by value, so -0.0 and 0.0 are one key
  for (size_t i = 0; i < cloud.size() && seen.size() < enough; ++i)
    seen.insert({cloud.xyz[3 * i] + 0.0f, cloud.xyz[3 * i + 1] + 0.0f, cloud.xyz[3 * i + 2] + 0.0f});
  return seen.size();
}

void check_min_points(const std::string& path, const Cloud& cloud) {
  const size_t n = cloud.size();
  if (n < kMinPoints)
    fail(path, "only " + std::to_string(n) + " valid point(s); at least " + std::to_string(kMinPoints) +
                   " are needed to render and score a cloud");
  const size_t distinct = count_distinct_locations(cloud);
  if (distinct < kMinPoints)
    fail(path, "only " + std::to_string(distinct) + " distinct point location(s) among " + std::to_string(n) +
                   " valid points; at least " + std::to_string(kMinPoints) + " are needed to render and score a cloud");
}

PointFile read_point_file(const std::string& path, const std::string& dataset) {
  const std::string problem = path_problem(path);
  if (!problem.empty()) fail(path, problem);
  std::string suffix = fs::path(path).extension().string();
  std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return std::tolower(c); });
  PointFile out;
  if (suffix == ".tiff" || suffix == ".tif") {
    int h = 0, w = 0;
    const auto xyz = read_xyz_tiff(path, h, w);
    PointFile grid = preprocess_grid(xyz, h, w, path);  // organized: never resampled (Python: grid_to_sample)
    check_min_points(path, grid.cloud);
    return grid;
  }
  if (suffix == ".ply") {
    out.cloud = read_ply(path);
  } else if (suffix == ".pcd") {
    out.cloud = read_pcd(path);
  } else if (suffix == ".npy") {
    std::size_t rows = 0;
    std::vector<float> raw;
    const std::string bytes = read_all(path);
    try {
      raw = parse_npy_points(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), path, &rows);
    } catch (const NpyError& err) {
      fail(path, err.problem());
    }
    out.cloud = drop_invalid_rows(raw.data(), rows);
    if (out.cloud.size() == 0) fail(path, "point cloud has no valid point (all zero or NaN)");
  } else {
    fail(path, "unsupported point file type '" + suffix + "' (use .tiff, .pcd, .ply or .npy)");
  }
  check_min_points(path, out.cloud);  // before any resampling (spec 4.1)
  if (dataset == "real3d") out.cloud = resample_real3d(out.cloud.xyz.data(), out.cloud.size());
  return out;
}

}  // namespace align3d
