// OpenVINO C++ backend: compiles the bundle's IR (encoder.xml/.bin), or its ONNX graph when the
// bundle has no IR, once; runs all V views of a sample in one request.
#include <openvino/openvino.hpp>

#include <algorithm>
#include <cstring>

#include "encoder.hpp"

namespace align3d {
namespace {

std::string first_line(const std::string& text) {
  const auto pos = text.find('\n');
  return pos == std::string::npos ? text : text.substr(0, pos);
}

class OpenVinoEncoder final : public Encoder {
 public:
  OpenVinoEncoder(const BundleInfo& b, const InspectorOptions& o) {
    const std::string hint = o.precision_hint == "fp32" ? "f32" : o.precision_hint == "fp16" ? "f16" : o.precision_hint;
    if (hint != "f32" && hint != "bf16" && hint != "f16")
      throw Error("--precision-hint: unknown precision '" + o.precision_hint + "' (choose f32, bf16 or f16)");
    model_ = b.ir_xml.empty() ? b.onnx_file : b.ir_xml;
    precision_ = b.ir_xml.empty() ? b.precision : b.ir_precision;
    // An fp16 graph runs too, but only f32 compute of an fp32 graph is held to the 1e-4 contract.
    device_ = o.device;
    std::transform(device_.begin(), device_.end(), device_.begin(), ::toupper);
    try {
      ov::Core core;
      const auto devices = core.get_available_devices();
      const std::string base = device_.substr(0, device_.find_first_of(".:"));
      const bool virtual_dev = base == "AUTO" || base == "MULTI" || base == "HETERO";
      const bool found = std::any_of(devices.begin(), devices.end(), [&](const std::string& d) {
        return d == device_ || d.substr(0, d.find('.')) == base;
      });
      if (!virtual_dev && !found) {
        std::string have;
        for (const auto& d : devices) have += (have.empty() ? "" : ", ") + d;
        throw Error("openvino: device " + device_ +
                    " is not available here (OpenVINO reports: " + (have.empty() ? "none" : have) + ")");
      }
      ov::AnyMap config{{ov::hint::performance_mode.name(), ov::hint::PerformanceMode::LATENCY},
                        {ov::hint::inference_precision.name(), hint == "f32"    ? ov::element::f32
                                                               : hint == "bf16" ? ov::element::bf16
                                                                                : ov::element::f16}};
      if (o.threads > 0) config.emplace(ov::inference_num_threads.name(), o.threads);
      compiled_ = core.compile_model(model_, device_, config);
      views_ = port(compiled_.inputs(), kViewsTensor, "input");
      maps_ = port(compiled_.outputs(), kPatchMapsTensor, "output");
      probs_ = port(compiled_.outputs(), kGlobalProbsTensor, "output");
      request_ = compiled_.create_infer_request();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& err) {
      throw Error(model_ + ": OpenVINO cannot compile the model for " + device_ + " (" + first_line(err.what()) + ")");
    }
    hint_ = hint;
  }

  EncoderOutput infer(const std::uint8_t* views, int v, int s, int g) override {
    EncoderOutput out;
    if (v == 0) return out;
    ov::Tensor input(ov::element::u8,
                     ov::Shape{static_cast<size_t>(v), static_cast<size_t>(s), static_cast<size_t>(s), 3},
                     const_cast<std::uint8_t*>(views));  // read only: OpenVINO does not write inputs
    request_.set_tensor(views_, input);
    request_.infer();
    const ov::Tensor maps = request_.get_tensor(maps_);
    const ov::Tensor probs = request_.get_tensor(probs_);
    const size_t want_maps = static_cast<size_t>(v) * 2 * g * g, want_probs = static_cast<size_t>(v) * 2;
    if (maps.get_element_type() != ov::element::f32 || maps.get_size() != want_maps ||
        probs.get_element_type() != ov::element::f32 || probs.get_size() != want_probs)
      throw Error(model_ + ": encoder outputs have unexpected shapes (want patch_maps (" + std::to_string(v) + ",2," +
                  std::to_string(g) + "," + std::to_string(g) + ") f32 and global_probs (" + std::to_string(v) +
                  ",2))");
    out.patch_maps.assign(maps.data<const float>(), maps.data<const float>() + want_maps);
    out.global_probs.assign(probs.data<const float>(), probs.data<const float>() + want_probs);
    return out;
  }

  // The model's port named `name` (spec §3); "MODEL: the encoder graph has no input 'views' ..." otherwise.
  ov::Output<const ov::Node> port(const std::vector<ov::Output<const ov::Node>>& ports, const char* name,
                                  const char* kind) const {
    std::string have;
    for (const auto& p : ports) {
      if (p.get_names().count(name)) return p;
      have += (have.empty() ? "" : ", ") + (p.get_names().empty() ? std::string("(unnamed)") : p.get_any_name());
    }
    throw Error(model_ + ": the encoder graph has no " + kind + " '" + name + "' (it has: " + have +
                "); re-export the bundle with align3d-rt export");
  }

  std::string describe() const override { return "openvino " + device_ + " " + hint_; }
  std::string model_file() const override { return model_; }
  std::string precision() const override { return precision_; }

 private:
  std::string model_, precision_, device_, hint_;
  ov::CompiledModel compiled_;
  ov::InferRequest request_;
  ov::Output<const ov::Node> views_, maps_, probs_;
};

}  // namespace

std::unique_ptr<Encoder> make_openvino_encoder(const BundleInfo& bundle, const InspectorOptions& options) {
  return std::make_unique<OpenVinoEncoder>(bundle, options);
}

}  // namespace align3d
