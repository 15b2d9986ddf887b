// Encoder backends (spec section 3): uint8 views (V,S,S,3) -> patch_maps (V,2,G,G), global_probs (V,2).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "align3d/inspector.hpp"
#include "bundle.hpp"

namespace align3d {

/// Views per encoder call at most (4 clouds of 9 views): align3d_rt.runtime.base.VIEW_CHUNK, spec section 2.
constexpr int kViewChunk = 36;

struct EncoderOutput {
  std::vector<float> patch_maps;    // V*2*G*G
  std::vector<float> global_probs;  // V*2
};

class Encoder {
 public:
  virtual ~Encoder() = default;
  /// All V views in one call (as Python's --batch-size 1). Not re-entrant: the Inspector serialises calls.
  virtual EncoderOutput infer(const std::uint8_t* views, int num_views, int image_size, int grid_size) = 0;
  virtual std::string describe() const = 0;  // e.g. "openvino CPU f32"
  virtual std::string model_file() const = 0;
  virtual std::string precision() const = 0;
  /// What the encoder computes in (OpenVINO: the precision hint in use, e.g. "bf16"); the graph's otherwise.
  virtual std::string compute_precision() const { return precision(); }
};

/// Backends compiled into this build ("openvino" and, when found at configure time, "onnxruntime",
/// "tensorrt").
std::vector<std::string> available_backends();

/// Throws align3d::Error "PATH: problem" (unknown backend, device, precision hint, compile failure).
std::unique_ptr<Encoder> make_encoder(const BundleInfo& bundle, const InspectorOptions& options);

#ifdef ALIGN3D_WITH_OPENVINO
std::unique_ptr<Encoder> make_openvino_encoder(const BundleInfo& bundle, const InspectorOptions& options);
#endif
#ifdef ALIGN3D_WITH_ONNXRUNTIME
std::unique_ptr<Encoder> make_onnxruntime_encoder(const BundleInfo& bundle, const InspectorOptions& options);
#endif
#ifdef ALIGN3D_WITH_TENSORRT
std::unique_ptr<Encoder> make_tensorrt_encoder(const BundleInfo& bundle, const InspectorOptions& options);
#endif

}  // namespace align3d
