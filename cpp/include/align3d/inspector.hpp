// align3d inspector: score point clouds with an exported align3d_rt bundle, no Python needed.
//
//   align3d::Inspector insp("BUNDLE");                 // verify bundle, compile the encoder once
//   align3d::ScoreResult r = insp.score(points);       // points: N*3 floats (x,y,z), many times
//
// Thread safety: an Inspector is immutable after construction except for its encoder, whose
// inference request is guarded by a mutex; score() may be called from several threads at once
// (encoder calls are serialised, rendering and back-projection run concurrently). For parallel
// encoder throughput create one Inspector per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "align3d/decisions.hpp"

namespace align3d {

/// Every user-facing failure: what() is one line "PATH: problem".
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct InspectorOptions {
  std::string backend = "openvino";  // "openvino" (default), "onnxruntime" / "tensorrt" when built
  std::string device = "CPU";        // OpenVINO device name
  // OpenVINO INFERENCE_PRECISION_HINT: auto (bf16 where the device reports BF16, else f32; the fast
  // route), f32 (bit-exact with Python's f32 compute), bf16, f16 (also fp32/fp16/bfloat16)
  std::string precision_hint = "auto";
  // OpenVINO PERFORMANCE_HINT: LATENCY (default) or THROUGHPUT (streams; a sample's views split over them)
  std::string performance_hint = "LATENCY";
  int threads = 0;          // encoder threads (0: backend default)
  std::string dataset;      // optional: mvtec3d, synthetic, eyecandies, real3d (spec 5.1)
  std::string category;     // optional MVTec category (point size)
  std::string calibration;  // optional calibration file (spec 13.2): score() then decides;
                            // its dataset/category are the defaults (another one is refused)
};

/// Seconds spent per stage of one score() call (read is filled by the caller that read the file).
struct Timings {
  double read = 0, render = 0, encode = 0, backproject = 0, score = 0;
};

/// Seconds the constructor spent: the manifest and the files hashed before the encoder loads (with the
/// openvino backend only the IR; else every file), loading the encoder (OpenVINO: compiling the IR or
/// importing the compiled blob from its cache), and waiting for the rest of the bundle's files (hashed
/// in the background meanwhile).
struct StartupTimings {
  double load_bundle = 0, load_encoder = 0, wait_files = 0;
};

struct ScoreResult {
  std::vector<float> point_scores;   // N*3: render, aligned, fused (spec section 7)
  std::vector<float> global_probs;   // V*2
  double object_score = 0;           // spec section 8
  float max_point_score = 0;         // max fused
  std::vector<std::uint8_t> images;  // V*S*S*3 renders (only when keep_images)
  int num_views = 0, image_size = 0;
  Timings timings;
  bool decided = false;  // true when the Inspector has a calibration
  Decision decision;     // spec 13.4: ok/reject, regions, normalised point scores
};

class Inspector {
 public:
  /// Loads and verifies the bundle (manifest checksum, sha256 of every file) and compiles the encoder.
  /// Throws align3d::Error with one line on any problem; a bundle file problem is reported before any
  /// later one (spec 2.6 order).
  explicit Inspector(const std::string& bundle_dir, const InspectorOptions& options = {});
  ~Inspector();
  Inspector(Inspector&&) noexcept;
  Inspector& operator=(Inspector&&) noexcept;
  Inspector(const Inspector&) = delete;
  Inspector& operator=(const Inspector&) = delete;

  /// Scores one cloud of N valid points (x,y,z interleaved, N >= 1, finite); with a calibration
  /// (options.calibration, verified against this bundle at construction) also decides (spec 13.4).
  ScoreResult score(const std::vector<float>& points, bool keep_images = false) const;

  int num_views() const;
  int image_size() const;
  double fusion_weight() const;
  const std::string& precision() const;    // model precision (IR's, else the ONNX graph's)
  const std::string& model_file() const;   // the verified file the encoder was compiled from
  const std::string& bundle_hash() const;  // sha256 of encoder.onnx (files[onnx.file])
  const Calibration* calibration() const;  // the attached calibration, nullptr without one
  const std::string& dataset() const;      // options.dataset, or the calibration's when that is empty
  const std::string& category() const;     // likewise

  /// What the encoder computes in (OpenVINO: the hint in use, f32, bf16 or f16).
  const std::string& compute_precision() const;

  /// Where the constructor's time went (the first score() call's own extra cost shows in its Timings).
  const StartupTimings& startup_timings() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace align3d
