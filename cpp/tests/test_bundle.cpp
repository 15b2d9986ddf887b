// Bundle verification: canonical JSON (spec appendix A), sha256, refusal of tampered bundles (2.6).
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "align3d/inspector.hpp"
#include "bundle.hpp"
#include "outputs.hpp"
#define CHECK_ERROR_TYPE align3d::Error  // what EXPECT_ERROR expects
#include "check.hpp"                     // cpp/geometry/tests/check.hpp, shared with the geometry tests

namespace fs = std::filesystem;
using align3d::load_bundle;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
void spit(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary | std::ios::trunc) << text; }

fs::path fresh_copy(const fs::path& fixture, const std::string& name) {
  const fs::path dst = fs::temp_directory_path() / ("align3d_test_bundle_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dst);
  fs::copy(fixture, dst, fs::copy_options::recursive);
  return dst;
}

// Rewrites the manifest with a valid checksum (computed by the serialiser that appendix A checks).
void rewrite_signed(const fs::path& dir, nlohmann::json m) {
  m["manifest_sha256"] = align3d::sha256_hex(align3d::canonical_manifest_text(m));
  spit(dir / "manifest.json", m.dump(2) + "\n");
}

void appendix_a() {
  const std::string doc =
      "{\"format\": \"align3d_rt.bundle\", \"format_version\": 2,"
      " \"b\": [1, 2.0, -0.0, 1e-05, 0.0001, 1e16, 1e15, 7.748603820800781e-07, 0.1, true, null],"
      " \"a\": {\"z\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ /\\n\\t\\u0001\\u007f\", \"y\": 1234567890123456789},"
      " \"manifest_sha256\": \"anything\"}";
  const auto m = nlohmann::json::parse(doc);
  const std::string want =
      "{\"a\":{\"y\":1234567890123456789,\"z\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ /\\n\\t\\u0001\\u007f\"},"
      "\"b\":[1,2.0,-0.0,1e-05,0.0001,1e+16,1000000000000000.0,7.748603820800781e-07,0.1,true,null],"
      "\"format\":\"align3d_rt.bundle\",\"format_version\":2}";
  CHECK(align3d::canonical_manifest_text(m) == want);
  CHECK(align3d::sha256_hex(align3d::canonical_manifest_text(m)) ==
        "29499f21417dd585601b71ee1ecd90db2fc71f8b50ecbd9358e989bcfd323237");
  const std::pair<double, const char*> reprs[] = {{0.5, "0.5"},
                                                  {4.0, "4.0"},
                                                  {0.0001, "0.0001"},
                                                  {1e-05, "1e-05"},
                                                  {1.5e-07, "1.5e-07"},
                                                  {1e16, "1e+16"},
                                                  {1e15, "1000000000000000.0"},
                                                  {0.1, "0.1"},
                                                  {-0.0, "-0.0"},
                                                  {123.456, "123.456"},
                                                  {1e22, "1e+22"},
                                                  {1.0 / 3.0, "0.3333333333333333"},
                                                  {5e-324, "5e-324"},
                                                  {1.7976931348623157e308, "1.7976931348623157e+308"}};
  for (const auto& [v, s] : reprs) {
    const std::string got = align3d::python_float_repr(v);
    if (got != s) std::fprintf(stderr, "repr(%.17g): got %s want %s\n", v, got.c_str(), s);
    CHECK(got == s);
  }
  CHECK(align3d::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const fs::path fixture = fs::path(argv[1]) / "bundle";
  appendix_a();

  // The Python-written fixture verifies (its manifest_sha256 was computed by Python).
  const auto b = load_bundle(fixture.string());
  CHECK(b.precision == "fp32" && b.fusion_weight == 0.5 && b.grid_size == 24 && b.image_size == 336);
  CHECK(b.render.preset == "mvtec9" && b.render.point_size == 8 && b.render.window == 1024 && b.render.gray == 0.7);
  CHECK(b.ir_xml == fixture.string() + "/encoder.xml" && b.ir_precision == "fp32");
  CHECK(b.onnx_sha256 == "303fdd1b6537271c6a2fa790ea043ea8a01faae011a3c5284f5f6c4b1592271b");

  {  // two runs racing for a new --out: this one creates it, the other locks it first. This one fails with the
     // lock message and must leave the folder in place: the other run is about to write into it.
    const fs::path out = fs::temp_directory_path() / ("align3d_test_race_" + std::to_string(::getpid()));
    fs::remove_all(out);
    int other = -1;
    {
      align3d::OutputFolder loser(out.string(), fixture.string(), false);
      loser.create();
      CHECK(fs::is_directory(out));
      other = ::open(out.c_str(), O_RDONLY | O_DIRECTORY);
      CHECK(other >= 0 && ::flock(other, LOCK_EX | LOCK_NB) == 0);
      EXPECT_ERROR_HAS(loser.lock(), "another run is writing this output folder");
    }  // the loser's destructor runs here, while the other run holds the lock
    CHECK(fs::is_directory(out));
    ::close(other);
    {  // a folder this run created and locked, left empty by a failed start, is removed again
      fs::remove_all(out);
      align3d::OutputFolder run(out.string(), fixture.string(), false);
      run.open();
    }
    CHECK(!fs::exists(out));
  }

  EXPECT_ERROR(load_bundle("/nonexistent/bundle"), "/nonexistent/bundle: bundle directory not found");
  const fs::path empty = fs::temp_directory_path() / ("align3d_test_empty_" + std::to_string(::getpid()));
  fs::create_directories(empty);
  EXPECT_ERROR(load_bundle(empty.string()), empty.string() + ": not a bundle (manifest.json missing)");
  fs::remove_all(empty);

  {  // one byte of the graph changed: message 10
    const auto d = fresh_copy(fixture, "onnx");
    std::string g = slurp(d / "encoder.onnx");
    g[0] ^= 1;
    spit(d / "encoder.onnx", g);
    EXPECT_ERROR(load_bundle(d.string()),
                 (d / "encoder.onnx").string() +
                     ": sha256 differs from the manifest (file altered or corrupt); re-export the bundle");
    fs::remove_all(d);
  }
  {  // the IR weights changed
    const auto d = fresh_copy(fixture, "bin");
    spit(d / "encoder.bin", "x");
    EXPECT_ERROR_HAS(load_bundle(d.string()), (d / "encoder.bin").string() + ": sha256 differs");
    fs::remove_all(d);
  }
  {  // a listed file is missing: message 9
    const auto d = fresh_copy(fixture, "missing");
    fs::remove(d / "encoder.xml");
    EXPECT_ERROR(load_bundle(d.string()), (d / "encoder.xml").string() + ": missing from the bundle; re-export it");
    fs::remove_all(d);
  }
  const std::string checksum_msg =
      ": manifest checksum mismatch (manifest.json was edited or is corrupt); re-export the bundle instead of editing "
      "it";
  {  // fusion_weight edited in the text: message 5
    const auto d = fresh_copy(fixture, "edited");
    std::string m = slurp(d / "manifest.json");
    const auto pos = m.find("\"fusion_weight\": 0.5");
    CHECK(pos != std::string::npos);
    m.replace(pos, 20, "\"fusion_weight\": 0.6");
    spit(d / "manifest.json", m);
    EXPECT_ERROR(load_bundle(d.string()), (d / "manifest.json").string() + checksum_msg);
    // re-indenting is not an edit: same content, other whitespace, still verifies
    auto parsed = nlohmann::json::parse(slurp(fixture / "manifest.json"));
    spit(d / "manifest.json", parsed.dump());
    CHECK(load_bundle(d.string()).fusion_weight == 0.5);
    parsed.erase("manifest_sha256");  // a v2 manifest without its checksum is a mismatch
    spit(d / "manifest.json", parsed.dump());
    EXPECT_ERROR(load_bundle(d.string()), (d / "manifest.json").string() + checksum_msg);
    fs::remove_all(d);
  }
  {  // other refusals, each with a correctly re-signed manifest
    const auto d = fresh_copy(fixture, "signed");
    const auto base = nlohmann::json::parse(slurp(fixture / "manifest.json"));
    const std::string mp = (d / "manifest.json").string();
    auto m = base;
    m["fusion_weight"] = 1.5;
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": fusion_weight 1.5 is outside [0, 1]");
    m = base;
    m["precision"] = "fp8";
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": unknown precision 'fp8'");
    m = base;
    m["files"]["../outside"] = m["files"]["encoder.onnx"];
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": file path '../outside' leaves the bundle directory");
    m = base;
    m["render_settings"]["renderer"] = "open3d";
    rewrite_signed(d, m);
    EXPECT_ERROR_HAS(load_bundle(d.string()), mp + ": renderer 'open3d' is not part of the runtime contract");
    m = base;
    m["render_settings"]["preset"] = "nope9";
    rewrite_signed(d, m);
    EXPECT_ERROR_HAS(load_bundle(d.string()), mp + ": bad render settings (unknown view preset 'nope9'");
    m = base;
    m["render_settings"]["image_size"] = 224;
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": render image size 224 differs from the graph's input size 336");
    m = base;
    m["files"].erase("encoder.xml");
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": OpenVINO IR encoder.xml is not hash-listed in the manifest");
    m = base;
    m.erase("clip");
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": manifest lacks 'clip'");
    m = base;
    m["format_version"] = 4;
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": bundle format version 4, this align3d_rt reads version 3; upgrade "
                                               "align3d_rt, or re-export the bundle with this version");
    m = base;
    m["format_version"] = 2;
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()),
                 mp + ": bundle format version 2 feeds the aligner unnormalised CLIP features; since run format 2 / "
                      "bundle format 3 the aligner L2-normalises its inputs and outputs as the reference does, and old "
                      "weights cannot be converted numerically; re-export the bundle with this version");
    m = base;
    m["format"] = "something.else";
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": not an align3d_rt.bundle manifest");
    spit(d / "manifest.json", "{not json");
    EXPECT_ERROR_HAS(load_bundle(d.string()), mp + ": unreadable manifest (");
    m = base;
    m["files"] = nlohmann::json::object();
    rewrite_signed(d, m);
    EXPECT_ERROR(load_bundle(d.string()), mp + ": manifest lists no files");
    fs::remove_all(d);
  }
  return check::finish("test_bundle");
}
