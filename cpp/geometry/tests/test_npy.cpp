// .npy reader/writer edge cases: round trips, Fortran order, versions, truncation, bad headers.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "align3d/npy.hpp"
#include "check.hpp"

using align3d::NpyArray;
using align3d::NpyType;

namespace {

std::vector<std::uint8_t> raw_npy(int major, const std::string& header_dict, const std::vector<std::uint8_t>& data) {
  std::string header = header_dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::vector<std::uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(major), 0};
  const std::size_t len = header.size();
  out.push_back(static_cast<std::uint8_t>(len & 0xff));
  out.push_back(static_cast<std::uint8_t>((len >> 8) & 0xff));
  if (major != 1) {
    out.push_back(static_cast<std::uint8_t>((len >> 16) & 0xff));
    out.push_back(static_cast<std::uint8_t>((len >> 24) & 0xff));
  }
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

template <typename T>
std::vector<std::uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<std::uint8_t> out(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

NpyArray parse(const std::vector<std::uint8_t>& b) { return align3d::parse_npy(b.data(), b.size(), "x.npy"); }

void round_trips() {
  const std::vector<float> f = {1.5f, -2.0f, 0.0f, 3.25f, 1e-30f, -7.0f};
  const NpyArray a = parse(align3d::encode_npy(NpyType::f32, {2, 3}, f.data()));
  CHECK(a.type == NpyType::f32);
  CHECK((a.shape == std::vector<std::size_t>{2, 3}));
  CHECK(align3d::npy_as_f32(a) == f);
  const std::vector<double> d = {0.1, -1e300, 2.5};
  CHECK(align3d::npy_as_f64(parse(align3d::encode_npy(NpyType::f64, {3}, d.data()))) == d);
  const std::vector<std::int64_t> i = {-1, 1LL << 40, 7};
  CHECK(align3d::npy_as_i64(parse(align3d::encode_npy(NpyType::i64, {3, 1}, i.data()))) == i);
  const std::vector<std::uint8_t> u = {0, 1, 255, 3};
  const NpyArray au = parse(align3d::encode_npy(NpyType::u8, {2, 2}, u.data()));
  CHECK(au.data == u);
  const NpyArray empty = parse(align3d::encode_npy(NpyType::f32, {0, 3}, nullptr));
  CHECK(empty.count() == 0 && empty.shape.size() == 2);
  const double scalar = 4.0;
  const NpyArray s = parse(align3d::encode_npy(NpyType::f64, {}, &scalar));
  CHECK(s.shape.empty() && s.count() == 1 && align3d::npy_as_f64(s)[0] == 4.0);
  // The writer's header is what numpy writes: aligned to 64 bytes, ends with '\n'.
  const std::vector<std::uint8_t> enc = align3d::encode_npy(NpyType::f32, {2, 3}, f.data());
  CHECK((enc.size() - 24) % 64 == 0);
  CHECK(enc[127] == '\n');
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  CHECK(std::string(enc.begin() + 10, enc.begin() + 10 + static_cast<std::ptrdiff_t>(dict.size())) == dict);
}

void fortran_order_and_versions() {
  // (2,3) array [[1,2,3],[4,5,6]] stored column by column.
  const std::vector<double> column_major = {1, 4, 2, 5, 3, 6};
  const NpyArray a =
      parse(raw_npy(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", bytes_of(column_major)));
  CHECK((align3d::npy_as_f64(a) == std::vector<double>{1, 2, 3, 4, 5, 6}));
  const std::vector<std::int64_t> ints = {1, 2, 3};
  const NpyArray b = parse(raw_npy(2, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", bytes_of(ints)));
  CHECK(align3d::npy_as_i64(b) == ints);
  const NpyArray c = parse(
      raw_npy(3, "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(1,3)}", bytes_of(std::vector<float>{1, 2, 3})));
  CHECK((c.shape == std::vector<std::size_t>{1, 3}));
  // 3-D Fortran order: element (i,j,k) at i + 2j + 4k.
  std::vector<float> f3(8);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 2; ++k) f3[i + 2 * j + 4 * k] = static_cast<float>(100 * i + 10 * j + k);
  const std::vector<float> c3 = align3d::npy_as_f32(
      parse(raw_npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2, 2), }", bytes_of(f3))));
  CHECK((c3 == std::vector<float>{0, 1, 10, 11, 100, 101, 110, 111}));
  // A trailing data surplus is ignored, as np.load does.
  std::vector<std::uint8_t> extra =
      raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", bytes_of(std::vector<float>{2, 9}));
  CHECK(align3d::npy_as_f32(parse(extra)).size() == 1);
}

void conversions() {
  const std::vector<double> d = {1e39, -1e39, static_cast<double>(FLT_MAX) * (1 + 1e-12), 0.1, std::nan("")};
  const std::vector<float> f = align3d::npy_as_f32(parse(align3d::encode_npy(NpyType::f64, {5}, d.data())));
  CHECK(std::isinf(f[0]) && f[0] > 0);
  CHECK(std::isinf(f[1]) && f[1] < 0);
  CHECK(f[2] == FLT_MAX);
  CHECK(f[3] == 0.1f);
  CHECK(std::isnan(f[4]));
  const std::vector<float> fl = {1.0f};
  CHECK_THROWS(align3d::npy_as_i64(parse(align3d::encode_npy(NpyType::f32, {1}, fl.data()))), "integer array");
}

void malformed() {
  const std::vector<std::uint8_t> good = align3d::encode_npy(NpyType::f32, {4, 3}, std::vector<float>(12, 1.0f).data());
  CHECK_THROWS(parse(std::vector<std::uint8_t>(good.begin(), good.end() - 1)),
               "truncated .npy: shape (4, 3) needs 48 data bytes, the file holds 47");
  CHECK_THROWS(parse(std::vector<std::uint8_t>(good.begin(), good.begin() + 40)), "truncated .npy header");
  CHECK_THROWS(parse(std::vector<std::uint8_t>(good.begin(), good.begin() + 5)), "bad magic");
  std::vector<std::uint8_t> bad_magic = good;
  bad_magic[1] = 'X';
  CHECK_THROWS(parse(bad_magic), "x.npy: not a .npy file (bad magic)");
  std::vector<std::uint8_t> bad_version = good;
  bad_version[6] = 9;
  CHECK_THROWS(parse(bad_version), "unsupported .npy format version 9");
  CHECK_THROWS(parse(raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", {})),
               "too large");
  CHECK_THROWS(parse(raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }", {})),
               "truncated");
  CHECK_THROWS(
      parse(raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 4), }", {})),
      "too large");
  CHECK_THROWS(
      parse(raw_npy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", std::vector<std::uint8_t>(8))),
      "unsupported dtype '<c8'");
  CHECK_THROWS(
      parse(raw_npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", std::vector<std::uint8_t>(4))),
      "big-endian");
  CHECK_THROWS(
      parse(raw_npy(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", std::vector<std::uint8_t>(8))),
      "unsupported dtype");
  CHECK_THROWS(parse(raw_npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                             std::vector<std::uint8_t>(4))),
               "structured");
  CHECK_THROWS(parse(raw_npy(1, "{'descr': '<f4', 'shape': (1,), }", std::vector<std::uint8_t>(4))), "lacks");
  CHECK_THROWS(
      parse(raw_npy(1, "{'descr': '<f4', 'fortran_order': maybe, 'shape': (1,), }", std::vector<std::uint8_t>(4))),
      "True or False");
  CHECK_THROWS(
      parse(raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", std::vector<std::uint8_t>(4))),
      "non-negative");
  CHECK_THROWS(
      parse(raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", std::vector<std::uint8_t>(4))),
      "bad header");
  CHECK_THROWS(
      parse(raw_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } junk", std::vector<std::uint8_t>(4))),
      "trailing text");
  // Header bytes quoted in a message are escaped: it stays one printable line.
  try {
    parse(raw_npy(1, "{'descr': '<f4', 'ke\ny\xcc': False, 'shape': (1,), }", std::vector<std::uint8_t>(4)));
    CHECK(false);
  } catch (const align3d::NpyError& e) {
    const std::string what = e.what();
    CHECK(what.find('\n') == std::string::npos);
    CHECK(what.find("unexpected header key 'ke\\x0ay\\xcc'") != std::string::npos);
  }
}

void files() {
  const std::string dir = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  const std::string path = dir + "/align3d_geometry_test_npy_" + std::to_string(std::rand()) + ".npy";
  const std::vector<float> pts = {1, 2, 3, 4, 5, 6};
  align3d::write_npy(path, NpyType::f32, {2, 3}, pts.data());
  std::size_t rows = 0;
  CHECK(align3d::read_npy_points(path, &rows) == pts);
  CHECK(rows == 2);
  const std::vector<std::int64_t> ints = {1, 2};
  align3d::write_npy(path, NpyType::i64, {2, 1}, ints.data());
  CHECK_THROWS(align3d::read_npy_points(path, &rows), ".npy must hold an (N,3) numeric array, got int64 (2, 1)");
  align3d::write_npy(path, NpyType::f64, {3}, std::vector<double>(3).data());
  CHECK_THROWS(align3d::read_npy_points(path, &rows), "got float64 (3,)");
  align3d::write_npy(path, NpyType::boolean, {1, 3}, std::vector<std::uint8_t>(3).data());
  CHECK_THROWS(align3d::read_npy_points(path, &rows), "got bool (1, 3)");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "garbage";
  }
  CHECK_THROWS(align3d::read_npy_points(path, &rows), path + ": unreadable .npy (not a .npy file (bad magic))");
  std::remove(path.c_str());
  CHECK_THROWS(align3d::read_npy(path), path + ": cannot open .npy file");
  CHECK_THROWS(align3d::write_npy(dir + "/no/such/dir/x.npy", NpyType::f32, {1}, pts.data()), "cannot write");
}

}  // namespace

int main() {
  round_trips();
  fortran_order_and_versions();
  conversions();
  malformed();
  files();
  return check::finish("test_npy");
}
