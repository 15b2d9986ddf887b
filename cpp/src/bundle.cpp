// Bundle loading: same checks, order and messages as align3d_rt/artifacts/bundle.py:load_bundle.
#include "bundle.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "align3d/inspector.hpp"

namespace align3d {
namespace fs = std::filesystem;
namespace {

const char* kFormat = "align3d_rt.bundle";
constexpr std::int64_t kFormatVersion = 3;  // align3d_rt.artifacts.bundle.FORMAT_VERSION
// align3d_rt.artifacts.migrate.ALIGNER_CHANGE: why formats 1 and 2 are refused.
const char* kAlignerChange =
    "feeds the aligner unnormalised CLIP features; since run format 2 / bundle format 3 the aligner "
    "L2-normalises its inputs and outputs as the reference does, and old weights cannot be converted "
    "numerically";
const char* kRequired[] = {"files",     "onnx",          "precision",       "image_size",
                           "grid_size", "fusion_weight", "render_settings", "clip"};

[[noreturn]] void fail(const std::string& path, const std::string& problem) { throw Error(path + ": " + problem); }

std::string join(const std::string& root, const std::string& rel) { return root + "/" + rel; }

std::string repr(const nlohmann::json& v) {  // Python repr of a manifest scalar (for messages)
  if (v.is_string()) return "'" + v.get<std::string>() + "'";
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_float()) return python_float_repr(v.get<double>());
  return v.dump();
}

nlohmann::json read_manifest(const std::string& root) {
  if (!fs::is_directory(root)) fail(root, "bundle directory not found");
  const std::string mpath = join(root, "manifest.json");
  if (!fs::is_regular_file(mpath)) fail(root, "not a bundle (manifest.json missing)");
  std::ifstream in(mpath, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) fail(mpath, "unreadable manifest (OSError: read failed)");
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& err) {
    fail(mpath, std::string("unreadable manifest (JSONDecodeError: ") + err.what() + ")");
  }
  if (!m.is_object() || !m.contains("format") || m["format"] != kFormat)
    fail(mpath, std::string("not an ") + kFormat + " manifest");
  const nlohmann::json version = m.contains("format_version") ? m["format_version"] : nlohmann::json();
  const bool is_int = version.is_number_integer();
  const std::int64_t v = is_int ? version.get<std::int64_t>() : -1;
  if (is_int && (v == 1 || v == 2))  // spec 2.6 row 6a: no numeric upgrade exists
    fail(mpath, "bundle format version " + std::to_string(v) + " " + kAlignerChange +
                    "; re-export the bundle with this version");
  if (!is_int || v != kFormatVersion)
    fail(mpath, "bundle format version " + repr(version) + ", this align3d_rt reads version " +
                    std::to_string(kFormatVersion) + "; " +
                    (is_int && v > kFormatVersion ? "upgrade align3d_rt, or " : "") +
                    "re-export the bundle with this version");
  if (has_nonfinite(m)) fail(mpath, "manifest holds NaN or infinite numbers; re-export the bundle");
  std::string digest;
  try {
    digest = sha256_hex(canonical_manifest_text(m));
  } catch (const std::domain_error&) {
    fail(mpath, "manifest holds NaN or infinite numbers; re-export the bundle");
  }
  const auto rec = m.find("manifest_sha256");
  if (rec == m.end() || !rec->is_string() || rec->get<std::string>() != digest)
    fail(mpath,
         "manifest checksum mismatch (manifest.json was edited or is corrupt); "
         "re-export the bundle instead of editing it");
  for (const char* key : kRequired)
    if (!m.contains(key)) fail(mpath, std::string("manifest lacks '") + key + "'");
  return m;
}

bool leaves_root(const std::string& rel) {
  bool escapes = rel.empty() || rel[0] == '/';
  std::stringstream parts(rel);
  for (std::string part; std::getline(parts, part, '/');) escapes = escapes || part == "..";
  return escapes;
}

// sha256 of each listed regular file inside root that `wanted` selects, on up to one thread per CPU (a
// bundle's big files, the ONNX graph and the IR weights, hash at the same time); as
// align3d_rt/artifacts/bundle.py:_digests.
FileDigests file_digests(const std::string& root, const nlohmann::json& files,
                         const std::function<bool(const std::string&)>& wanted) {
  std::vector<std::string> todo;
  for (auto it = files.begin(); it != files.end(); ++it)
    if (wanted(it.key()) && !leaves_root(it.key()) && fs::is_regular_file(join(root, it.key())))
      todo.push_back(it.key());
  std::vector<FileDigest> out(todo.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < todo.size();) {
      try {
        out[i].hex = sha256_file(join(root, todo[i]));
      } catch (...) {
        out[i].error = std::current_exception();
      }
    }
  };
  const size_t n_threads = std::min<size_t>(todo.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  FileDigests by_path;
  for (size_t i = 0; i < todo.size(); ++i) by_path.emplace(todo[i], std::move(out[i]));
  return by_path;
}

// Spec 2.4 over the listed files that `wanted` selects, in sorted order, with their digests computed
// beforehand: throws the first problem (a path leaving the bundle, a missing file, a differing hash).
void check_files(const std::string& root, const nlohmann::json& files, const FileDigests& digests,
                 const std::function<bool(const std::string&)>& wanted) {
  const std::string mpath = join(root, "manifest.json");
  for (auto it = files.begin(); it != files.end(); ++it) {  // sorted by key, like Python
    const std::string& rel = it.key();
    if (!wanted(rel)) continue;
    if (leaves_root(rel)) fail(mpath, "file path '" + rel + "' leaves the bundle directory");
    const std::string fpath = join(root, rel);
    const auto found = digests.find(rel);
    if (!fs::is_regular_file(fpath) || found == digests.end()) fail(fpath, "missing from the bundle; re-export it");
    if (found->second.error) std::rethrow_exception(found->second.error);
    if (!it.value().is_string() || found->second.hex != it.value().get<std::string>())
      fail(fpath, "sha256 differs from the manifest (file altered or corrupt); re-export the bundle");
  }
}

bool every_file(const std::string&) { return true; }

void check_listed(const std::string& root, const nlohmann::json& m) {
  if (!m["files"].is_object() || m["files"].empty()) fail(join(root, "manifest.json"), "manifest lists no files");
}

// The files an OpenVINO encoder reads: the IR's xml and bin, as the manifest names them (none when it has no IR).
std::set<std::string> ir_files(const nlohmann::json& m) {
  std::set<std::string> out;
  if (!m.contains("openvino") || !m["openvino"].is_object()) return out;
  for (const char* k : {"xml", "bin"})
    if (m["openvino"].contains(k) && m["openvino"][k].is_string()) out.insert(m["openvino"][k].get<std::string>());
  return out;
}

bool known_preset(const std::string& p) { return p == "paper9" || p == "mvtec9" || p == "eyecandies9"; }

RenderSettings render_settings(const nlohmann::json& rs, const std::string& mpath, std::string& renderer) {
  RenderSettings r;
  try {
    if (!rs.is_object()) throw std::invalid_argument("render_settings is not an object");
    if (rs.contains("preset")) r.preset = rs["preset"].get<std::string>();
    if (rs.contains("renderer")) renderer = rs["renderer"].get<std::string>();
    if (rs.contains("image_size")) r.image_size = rs["image_size"].get<int>();
    if (rs.contains("point_size")) r.point_size = rs["point_size"].get<int>();
    if (rs.contains("window")) r.window = rs["window"].get<int>();
    if (rs.contains("gray")) r.gray = rs["gray"].get<double>();
  } catch (const std::exception& err) {
    fail(mpath, std::string("bad render settings (") + err.what() + ")");
  }
  if (!known_preset(r.preset))
    fail(mpath, "bad render settings (unknown view preset '" + r.preset + "'; known: paper9, mvtec9, eyecandies9)");
  try {
    check_settings(r);
  } catch (const std::invalid_argument& err) {
    fail(mpath, std::string("bad render settings (") + err.what() + ")");
  }
  return r;
}

// Rows 11-17 of spec 2.6 (after the file hashes): the ONNX file and IR listed, precision, render settings,
// fusion weight, image and grid size.
BundleInfo finish_loading(BundleInfo b, const std::string& root, const std::string& mpath) {
  const auto& m = b.manifest;
  const auto& files = m["files"];
  const auto& onnx = m["onnx"];
  const std::string onnx_rel = onnx.is_object() && onnx.contains("file") && onnx["file"].is_string()
                                   ? onnx["file"].get<std::string>()
                                   : "encoder.onnx";
  if (!files.contains(onnx_rel)) fail(mpath, onnx_rel + " is not hash-listed in the manifest");
  b.onnx_file = join(root, onnx_rel);
  b.onnx_sha256 = files[onnx_rel].get<std::string>();
  if (m.contains("openvino") && !m["openvino"].is_null()) {
    const auto& ir = m["openvino"];
    std::string unlisted;
    for (const char* k : {"xml", "bin"}) {
      const bool ok = ir.is_object() && ir.contains(k) && ir[k].is_string() && files.contains(ir[k].get<std::string>());
      if (!ok) {
        const std::string name =
            ir.is_object() && ir.contains(k) && ir[k].is_string() ? ir[k].get<std::string>() : "None";
        unlisted += (unlisted.empty() ? "" : ", ") + name;
      }
      if (!ir.is_object()) break;
    }
    if (!unlisted.empty()) fail(mpath, "OpenVINO IR " + unlisted + " is not hash-listed in the manifest");
    b.ir_xml = join(root, ir["xml"].get<std::string>());
    b.ir_bin = join(root, ir["bin"].get<std::string>());
    b.ir_precision =
        ir.contains("precision") && ir["precision"].is_string() ? ir["precision"].get<std::string>() : "fp32";
  }
  const auto& prec = m["precision"];
  if (!prec.is_string() || (prec != "fp32" && prec != "fp16" && prec != "int8"))
    fail(mpath, "unknown precision " + repr(prec));
  b.precision = prec.get<std::string>();
  b.render = render_settings(m["render_settings"], mpath, b.renderer);
  if (!m["fusion_weight"].is_number() || !m["image_size"].is_number())
    fail(mpath, "fusion_weight and image_size must be numbers");
  b.fusion_weight = m["fusion_weight"].get<double>();
  b.image_size = m["image_size"].get<int>();
  if (!(b.fusion_weight >= 0.0 && b.fusion_weight <= 1.0))
    fail(mpath, "fusion_weight " + repr(m["fusion_weight"]) + " is outside [0, 1]");
  if (b.renderer != "splat" && b.renderer != "open3d")
    fail(mpath, "unknown renderer '" + b.renderer + "' (known: splat, open3d)");
  if (b.render.image_size != b.image_size)
    fail(mpath, "render image size " + std::to_string(b.render.image_size) + " differs from the graph's input size " +
                    std::to_string(b.image_size));
  if (b.renderer != "splat")
    fail(mpath, "renderer '" + b.renderer +
                    "' is not part of the runtime contract; the C++ inspector renders "
                    "with 'splat' only (spec section 1)");
  const auto& grid = m["grid_size"];  // Python: artifacts/bundle._settings_problem
  if (!grid.is_number_integer() || grid.get<std::int64_t>() < 1 || grid.get<std::int64_t>() > b.image_size)
    fail(mpath,
         "grid_size " + repr(grid) + " must be an integer in 1..image_size (" + std::to_string(b.image_size) + ")");
  b.grid_size = grid.get<int>();
  return b;
}

}  // namespace

bool has_nonfinite(const nlohmann::json& v) {
  if (v.is_number_float()) return !std::isfinite(v.get<double>());
  if (v.is_structured())
    for (const auto& x : v)
      if (has_nonfinite(x)) return true;
  return false;
}

void PendingFiles::finish() {
  if (!rest_.valid()) return;
  FileDigests all = rest_.get();
  all.merge(now_);
  check_files(root_, files_, all, every_file);  // the first problem in sorted order, as the sequential check
}

PendingFiles::~PendingFiles() {
  if (rest_.valid()) rest_.wait();  // an error path that did not finish(): the hashing threads still end here
}

BundleInfo load_bundle(const std::string& dir) {
  PendingFiles none;
  return load_bundle(dir, false, none);
}

BundleInfo load_bundle(const std::string& dir, bool defer_unread, PendingFiles& pending) {
  std::string root = dir;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  const std::string mpath = join(root, "manifest.json");
  BundleInfo b;
  b.path = root;
  b.manifest = read_manifest(root);
  const auto& m = b.manifest;
  check_listed(root, m);
  const auto& listed = m["files"];
  const std::set<std::string> first = defer_unread ? ir_files(m) : std::set<std::string>{};
  if (first.empty()) {  // everything now
    check_files(root, listed, file_digests(root, listed, every_file), every_file);
  } else {  // the encoder's files now; the rest (started first: the ONNX graph is the longest) hash in the
            // background until pending.finish()
    const auto now = [&first](const std::string& rel) { return first.count(rel) > 0; };
    pending.root_ = root;
    pending.files_ = listed;
    pending.rest_ = std::async(std::launch::async, [root, listed, first] {
      return file_digests(root, listed, [&first](const std::string& rel) { return first.count(rel) == 0; });
    });
    pending.now_ = file_digests(root, listed, now);
    try {
      check_files(root, listed, pending.now_, now);
    } catch (...) {  // report what the sequential check would: the first problem in sorted order
      pending.finish();
      throw;
    }
  }
  try {
    return finish_loading(std::move(b), root, mpath);
  } catch (...) {
    pending.finish();  // a file problem comes first (spec 2.6 order)
    throw;
  }
}

}  // namespace align3d
