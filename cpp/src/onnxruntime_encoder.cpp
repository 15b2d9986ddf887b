// ONNX Runtime C++ backend (optional: built with -DALIGN3D_WITH_ONNXRUNTIME=ON when ONNXRUNTIME_ROOT
// holds an onnxruntime release with C++ headers). Runs the bundle's encoder.onnx on the CPU provider
// with the session settings of spec section 3 (ORT_ENABLE_ALL, ORT_ENABLE_EXTENDED for fp16 graphs,
// log severity 3). Not built or tested on the development machine: the onnxruntime wheel has no C++
// headers.
#include <onnxruntime_cxx_api.h>

#include "encoder.hpp"

namespace align3d {
namespace {

class OnnxRuntimeEncoder final : public Encoder {
 public:
  OnnxRuntimeEncoder(const BundleInfo& b, const InspectorOptions& o)
      : env_(ORT_LOGGING_LEVEL_ERROR, "align3d"), model_(b.onnx_file), precision_(b.precision) {
    if (o.precision_hint != "auto" && o.precision_hint != "f32" && o.precision_hint != "fp32")
      throw Error(
          "--precision-hint: only the openvino backend takes it (onnxruntime computes in the graph's precision)");
    try {
      Ort::SessionOptions so;
      so.SetGraphOptimizationLevel(b.precision == "fp16" ? GraphOptimizationLevel::ORT_ENABLE_EXTENDED
                                                         : GraphOptimizationLevel::ORT_ENABLE_ALL);
      if (o.threads > 0) so.SetIntraOpNumThreads(o.threads);
      session_ = Ort::Session(env_, model_.c_str(), so);
    } catch (const Ort::Exception& err) {
      throw Error(model_ + ": ONNX Runtime cannot load the graph (" + err.what() + ")");
    }
  }

  EncoderOutput infer(const std::uint8_t* views, int v, int s, int g) override {
    EncoderOutput out;
    if (v == 0) return out;
    const std::int64_t shape[4] = {v, s, s, 3};
    const size_t count = static_cast<size_t>(v) * s * s * 3;
    auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value input = Ort::Value::CreateTensor<std::uint8_t>(mem, const_cast<std::uint8_t*>(views), count, shape, 4);
    const char* in_names[] = {kViewsTensor};
    const char* out_names[] = {kPatchMapsTensor, kGlobalProbsTensor};
    std::vector<Ort::Value> outs;
    try {
      outs = session_.Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 2);
    } catch (const Ort::Exception& err) {
      throw Error(model_ + ": ONNX Runtime inference failed (" + err.what() + ")");
    }
    const size_t want_maps = static_cast<size_t>(v) * 2 * g * g, want_probs = static_cast<size_t>(v) * 2;
    if (outs.size() != 2 || outs[0].GetTensorTypeAndShapeInfo().GetElementCount() != want_maps ||
        outs[1].GetTensorTypeAndShapeInfo().GetElementCount() != want_probs)
      throw Error(model_ + ": encoder outputs have unexpected shapes");
    const float* maps = outs[0].GetTensorData<float>();
    const float* probs = outs[1].GetTensorData<float>();
    out.patch_maps.assign(maps, maps + want_maps);
    out.global_probs.assign(probs, probs + want_probs);
    return out;
  }

  std::string describe() const override { return "onnxruntime CPU"; }
  std::string model_file() const override { return model_; }
  std::string precision() const override { return precision_; }

 private:
  Ort::Env env_;
  Ort::Session session_{nullptr};
  std::string model_, precision_;
};

}  // namespace

std::unique_ptr<Encoder> make_onnxruntime_encoder(const BundleInfo& bundle, const InspectorOptions& options) {
  return std::make_unique<OnnxRuntimeEncoder>(bundle, options);
}

}  // namespace align3d
