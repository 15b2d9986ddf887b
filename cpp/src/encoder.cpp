#include "encoder.hpp"

namespace align3d {

std::vector<std::string> available_backends() {
  std::vector<std::string> out;
#ifdef ALIGN3D_WITH_OPENVINO
  out.push_back("openvino");
#endif
#ifdef ALIGN3D_WITH_ONNXRUNTIME
  out.push_back("onnxruntime");
#endif
#ifdef ALIGN3D_WITH_TENSORRT
  out.push_back("tensorrt");
#endif
  return out;
}

std::unique_ptr<Encoder> make_encoder(const BundleInfo& bundle, const InspectorOptions& options) {
  if (options.backend != "openvino" && options.performance_hint != "LATENCY")
    throw Error("--performance-hint: only the openvino backend takes it");
#ifdef ALIGN3D_WITH_OPENVINO
  if (options.backend == "openvino") return make_openvino_encoder(bundle, options);
#endif
#ifdef ALIGN3D_WITH_ONNXRUNTIME
  if (options.backend == "onnxruntime") return make_onnxruntime_encoder(bundle, options);
#endif
#ifdef ALIGN3D_WITH_TENSORRT
  if (options.backend == "tensorrt") return make_tensorrt_encoder(bundle, options);
#endif
  std::string have;
  for (const auto& b : available_backends()) have += (have.empty() ? "" : ", ") + b;
  throw Error("--backend: '" + options.backend +
              "' is not built into this inspector (built: " + (have.empty() ? "none" : have) + ")");
}

}  // namespace align3d
