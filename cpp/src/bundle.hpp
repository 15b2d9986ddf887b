// Bundle loading and verification (docs/runtime-spec.md section 2): manifest checksum over the
// canonical JSON (2.3), sha256 of every listed file (2.4), refusal messages of 2.6.
#pragma once

#include <exception>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "align3d/geometry.hpp"

namespace align3d {

/// Encoder graph I/O names (spec §3; Python: artifacts/bundle.py INPUT_NAME, OUTPUT_NAMES). The
/// manifest does not record them: they are part of the bundle format. Backends look them up in the
/// model and refuse a graph without them.
inline constexpr const char* kViewsTensor = "views";
inline constexpr const char* kPatchMapsTensor = "patch_maps";
inline constexpr const char* kGlobalProbsTensor = "global_probs";

struct BundleInfo {
  std::string path;  // bundle directory as given
  nlohmann::json manifest;
  std::string onnx_file;       // absolute-ish path BUNDLE/onnx.file
  std::string onnx_sha256;     // files[onnx.file]
  std::string ir_xml, ir_bin;  // BUNDLE/openvino.xml/bin, empty when the bundle has no IR
  std::string ir_precision;    // openvino.precision, empty without IR
  std::string precision;       // manifest precision (the ONNX graph's)
  int image_size = 336, grid_size = 24;
  double fusion_weight = 0.5;
  RenderSettings render;  // the bundle's render_settings (splat renderer)
  std::string renderer = "splat";
};

/// Python's json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True) of the
/// manifest without its top-level manifest_sha256. Throws std::domain_error on NaN/inf.
std::string canonical_manifest_text(const nlohmann::json& manifest);
std::string canonical_json(const nlohmann::json& value);
// True when `v` holds a NaN or infinite number anywhere (manifests and calibrations refuse them).
bool has_nonfinite(const nlohmann::json& v);
/// Python repr(float) of a finite double.
std::string python_float_repr(double value);

/// Lowercase hex sha256 of bytes / of a file (throws align3d::Error "PATH: ..." when unreadable).
std::string sha256_hex(const std::string& bytes);
std::string sha256_file(const std::string& path);

struct FileDigest {
  std::string hex;
  std::exception_ptr error;  // the file could not be read
};
using FileDigests = std::map<std::string, FileDigest>;  // by path relative to the bundle

/// Bundle files still hashing on background threads. finish() waits for them and throws the first
/// problem of ALL the bundle's files in sorted order (what the sequential check reports); call it
/// before trusting the bundle and before reporting any later error. Without pending files it does nothing.
class PendingFiles {
 public:
  PendingFiles() = default;
  PendingFiles(const PendingFiles&) = delete;
  PendingFiles& operator=(const PendingFiles&) = delete;
  ~PendingFiles();
  void finish();

 private:
  friend BundleInfo load_bundle(const std::string& dir, bool defer_unread, PendingFiles& pending);
  std::string root_;
  nlohmann::json files_;
  FileDigests now_;
  std::future<FileDigests> rest_;
};

/// Reads, verifies (checksum + every file) and validates a bundle; throws align3d::Error.
BundleInfo load_bundle(const std::string& dir);
/// The same checks, with ``defer_unread``: only the files an OpenVINO encoder reads (the IR's xml and
/// bin) are hashed before it returns, the others hash in ``pending`` (spec 2.4 allows it) while the
/// caller compiles; the caller MUST call ``pending.finish()`` before using anything else of the bundle.
BundleInfo load_bundle(const std::string& dir, bool defer_unread, PendingFiles& pending);

}  // namespace align3d
