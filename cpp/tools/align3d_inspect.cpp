// align3d-inspect BUNDLE CLOUD... --out DIR: score point files with an exported bundle (no Python).
//
// Writes per cloud KEY.scores.npy (N,3 f32: render, aligned, fused), KEY.points.npy (the scored
// points), KEY.grid_index.npy (organized .tiff only), KEY.views.png (--png) and one scores.json
// (object scores, timings); with --calibration CAL also KEY.normalized.npy, KEY.regions.npy and the
// decision fields of docs/runtime-spec.md 13.5. CLOUD is a point file or a folder of them; KEY is the
// file's stem (below a folder D: D's name + "__" + the relative path), made unique as Python does (a
// repeat of a taken key gets the first free _1, _2...). --out is a new or empty folder, or with
// --overwrite an earlier align3d-inspect output (only its own files are replaced; anything else there
// is refused), never the bundle's folder; it is locked (flock) while written. A file that cannot be
// read or scored is one line "PATH: problem" on stderr and listed under "failed"; the others are
// scored (exit code 1). A bad bundle, calibration, option, --out or a missing file stops the run
// before anything is written (exit 2). Files are written under temporary names and renamed into
// place at the end.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "align3d/inspector.hpp"
#include "align3d/npy.hpp"
#include "decision_json.hpp"
#include "outputs.hpp"
#include "readers.hpp"

namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "usage: align3d-inspect BUNDLE CLOUD|FOLDER... --out DIR [--backend openvino] [--device-name CPU]\n"
    "                       [--precision-hint auto|f32|bf16|f16] [--performance-hint LATENCY|THROUGHPUT] [--threads N] "
    "[--dataset D] [--category C] [--png]\n"
    "                       [--calibration CAL] [--overwrite]\n"
    "Score .ply/.pcd/.npy/.tiff point files (or every one below a folder) with an exported align3d_rt bundle.\n";

// The datasets and categories the inspector accepts (Python: render/views.DATASET_CATEGORIES).
const std::map<std::string, std::vector<std::string>>& dataset_categories() {
  static const std::vector<std::string> mvtec = {"bagel", "cable_gland", "carrot", "cookie", "dowel",
                                                 "foam",  "peach",       "potato", "rope",   "tire"};
  static std::vector<std::string> synthetic = {"dome", "ring", "box", "wave", "cylinder"};
  static const std::map<std::string, std::vector<std::string>> table = [&] {
    synthetic.insert(synthetic.end(), mvtec.begin(), mvtec.end());
    return std::map<std::string, std::vector<std::string>>{
        {"mvtec3d", mvtec},
        {"eyecandies",
         {"candy_cane", "chocolate_cookie", "chocolate_praline", "confetto", "gummy_bear", "hazelnut_truffle",
          "licorice_sandwich", "lollipop", "marshmallow", "peppermint_candy"}},
        {"real3d",
         {"airplane", "car", "candybar", "chicken", "diamond", "duck", "fish", "gemstone", "seahorse", "shell",
          "starfish", "toffees", "ellipsoid", "torus", "capsule", "cube"}},
        {"synthetic", synthetic}};
  }();
  return table;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

void check_dataset(const std::string& dataset, const std::string& category) {
  const auto& table = dataset_categories();
  std::vector<std::string> datasets;
  for (const auto& [name, cats] : table) datasets.push_back(name);
  if (!dataset.empty() && !table.count(dataset))
    throw align3d::Error("--dataset: invalid choice '" + dataset + "' (choose from " + joined(datasets) + ")");
  if (category.empty()) return;
  if (dataset.empty())
    throw align3d::Error("--category '" + category + "': needs --dataset (one of " + joined(datasets) + ")");
  const auto& known = table.at(dataset);
  if (std::find(known.begin(), known.end(), category) == known.end())
    throw align3d::Error("--category '" + category + "': not a " + dataset + " category; known: " + joined(known));
}

struct Args {
  std::string bundle, out;
  std::vector<std::string> clouds;
  align3d::InspectorOptions options;
  bool png = false;
  bool overwrite = false;
};

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) throw align3d::Error(std::string(name) + ": expects a value");
      if (argv[i + 1][0] == '\0')  // as align3d-rt: "" (an unset variable) is never read as the current folder
        throw align3d::Error(std::string("argument ") + name + ": empty value (an unset shell variable?)");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--out")
      a.out = value("--out");
    else if (arg == "--backend")
      a.options.backend = value("--backend");
    else if (arg == "--device-name")
      a.options.device = value("--device-name");  // Python's spelling
    else if (arg == "--device") {                 // deprecated alias (Python's --device is auto|cpu|cuda)
      a.options.device = value("--device");
      std::cerr << "align3d-inspect: --device is deprecated, use --device-name (as align3d-rt infer)\n";
    } else if (arg == "--precision-hint")
      a.options.precision_hint = value("--precision-hint");
    else if (arg == "--performance-hint") {
      a.options.performance_hint = value("--performance-hint");  // LATENCY or THROUGHPUT (any case)
      for (char& c : a.options.performance_hint) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    } else if (arg == "--dataset")
      a.options.dataset = value("--dataset");
    else if (arg == "--category")
      a.options.category = value("--category");
    else if (arg == "--calibration") {
      a.options.calibration = value("--calibration");
    } else if (arg == "--png")
      a.png = true;
    else if (arg == "--overwrite")
      a.overwrite = true;
    else if (arg == "--threads") {
      const std::string v = value("--threads");  // a positive integer, all digits (Python: cli/numbers.positive_int)
      const bool digits = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos;
      if (!digits || std::stoi(v) < 1) throw align3d::Error("--threads: must be a positive integer, got '" + v + "'");
      if (std::stoi(v) > 1024)  // as align3d-rt (cli/numbers.MAX_THREADS)
        throw align3d::Error("--threads: must be an integer from 1 to 1024, got '" + v + "'");
      a.options.threads = std::stoi(v);
    } else if (arg.rfind("--", 0) == 0)
      throw align3d::Error(arg + ": unknown option");
    else if (arg.empty())
      throw align3d::Error("a path argument: empty value (an unset shell variable?)");
    else
      positional.push_back(arg);
  }
  check_dataset(a.options.dataset, a.options.category);
  if (positional.size() < 2) throw align3d::Error("align3d-inspect: need a BUNDLE and at least one CLOUD (see --help)");
  if (a.out.empty()) throw align3d::Error("--out: the output folder is required");
  a.bundle = positional[0];
  a.clouds.assign(positional.begin() + 1, positional.end());
  return a;
}

struct Sample {
  std::string key, file;
  align3d::PointFile points;
  align3d::ScoreResult result;
};

std::string now_local() {
  char buf[64];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", std::localtime(&t));
  return buf;
}

double round4(double v) { return std::round(v * 1e4) / 1e4; }

int run(const Args& a, std::chrono::steady_clock::time_point main_entered) {
  const std::string started = now_local();
  align3d::OutputFolder folder(a.out, a.bundle, a.overwrite);
  folder.check();  // before any work
  // Files and folders as Python's infer takes them (same keys); a missing input stops the run here.
  const auto inputs = align3d::collect_inputs(a.clouds, a.out);
  align3d::Inspector inspector(a.bundle, a.options);
  const double ready_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - main_entered).count();
  folder.open();  // created and locked; removed again if nothing gets written
  std::vector<Sample> samples;
  std::vector<std::pair<std::string, std::string>> failed;  // (file, "file: problem"), in input order
  for (const auto& input : inputs) {                        // a bad file is reported and skipped; the others are scored
    Sample s;
    s.file = input.file;
    s.key = input.key;
    try {
      const auto t0 = std::chrono::steady_clock::now();
      s.points = align3d::read_point_file(s.file, inspector.dataset());
      const double read = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      try {
        s.result = inspector.score(s.points.cloud.xyz, a.png);
      } catch (const align3d::Error& err) {
        const std::string msg = err.what();
        throw align3d::Error(s.file + ": " + (msg.rfind("points: ", 0) == 0 ? msg.substr(8) : msg));
      }
      s.result.timings.read = read;
      size_t bad = 0;  // a score that is not finite is never a result (NaN/Inf weights)
      for (size_t i = 0; i + 2 < s.result.point_scores.size(); i += 3)
        bad += !(std::isfinite(s.result.point_scores[i]) && std::isfinite(s.result.point_scores[i + 1]) &&
                 std::isfinite(s.result.point_scores[i + 2]));
      if (bad || !std::isfinite(s.result.object_score))
        throw align3d::Error(s.file + ": scores are not finite (" + std::to_string(bad) + " of " +
                             std::to_string(s.points.cloud.size()) +
                             " point(s)); the model weights or the input hold NaN/Inf");
    } catch (const std::exception& err) {  // align3d::Error, NpyError: "PATH: problem"
      std::string msg = err.what();
      if (msg.rfind(s.file, 0) != 0) msg = s.file + ": " + msg;
      std::cerr << msg << "\n";
      failed.emplace_back(s.file, msg);
      continue;
    }
    samples.push_back(std::move(s));
  }
  align3d::StagedOutputs staged(a.out);
  std::set<std::string> new_names{"scores.json"};
  nlohmann::json summary;
  summary["inspector"] = {{"source", "bundle"},
                          {"bundle_dir", a.bundle},
                          {"bundle_hash", inspector.bundle_hash()},
                          {"backend", a.options.backend},
                          {"device", a.options.device},
                          {"precision", inspector.precision()},
                          {"compute_precision", inspector.compute_precision()},
                          {"performance_hint", a.options.performance_hint},
                          {"model_file", inspector.model_file()},
                          {"fusion_weight", inspector.fusion_weight()},
                          {"dataset", inspector.dataset()},
                          {"category", inspector.category()}};
  // start-up split (seconds): main() entered -> Inspector constructed, of which the bundle (manifest + the
  // files hashed first), the encoder (compile / cache import) and the wait for the files
  // hashed in the background; process start before main() is what an outside wall clock sees beyond these
  const auto& st = inspector.startup_timings();
  summary["inspector"]["startup_s"] = {{"main_to_ready", round4(ready_s)},
                                       {"load_bundle", round4(st.load_bundle)},
                                       {"load_encoder", round4(st.load_encoder)},
                                       {"wait_files", round4(st.wait_files)}};
  summary["started"] = started;
  summary["samples"] = nlohmann::json::object();
  summary["failed"] = nlohmann::json::object();
  for (const auto& [file, msg] : failed) summary["failed"][file] = msg;
  for (const auto& s : samples) {
    const size_t n = s.points.cloud.size();
    nlohmann::json written = {{"scores", s.key + ".scores.npy"}, {"points", s.key + ".points.npy"}};
    staged.add_bytes(s.key + ".scores.npy",
                     align3d::encode_npy(align3d::NpyType::f32, {n, 3}, s.result.point_scores.data()));
    staged.add_bytes(s.key + ".points.npy",
                     align3d::encode_npy(align3d::NpyType::f32, {n, 3}, s.points.cloud.xyz.data()));
    if (!s.points.grid_index.empty()) {
      written["grid_index"] = s.key + ".grid_index.npy";
      staged.add_bytes(s.key + ".grid_index.npy",
                       align3d::encode_npy(align3d::NpyType::i64, {n}, s.points.grid_index.data()));
    }
    if (a.png) {
      written["png"] = s.key + ".views.png";
      staged.add_bytes(s.key + ".views.png",
                       align3d::views_png(s.result.images, s.result.num_views, s.result.image_size));
    }
    if (s.result.decided) {  // spec 13.5
      const auto& d = s.result.decision;
      written["normalized"] = s.key + ".normalized.npy";
      written["regions"] = s.key + ".regions.npy";
      staged.add_bytes(s.key + ".normalized.npy", align3d::encode_npy(align3d::NpyType::f32, {n}, d.normalized.data()));
      staged.add_bytes(s.key + ".regions.npy", align3d::encode_npy(align3d::NpyType::i32, {n}, d.labels.data()));
    }
    for (const auto& [what, name] : written.items()) new_names.insert(name.get<std::string>());
    const auto& t = s.result.timings;
    summary["samples"][s.key] = {{"file", s.file},
                                 {"object_score", s.result.object_score},
                                 {"max_point_score", static_cast<double>(s.result.max_point_score)},
                                 {"num_points", n},
                                 {"outputs", written},
                                 {"global_probs", s.result.global_probs},
                                 {"timings",
                                  {{"read", round4(t.read)},
                                   {"render", round4(t.render)},
                                   {"encode", round4(t.encode)},
                                   {"backproject", round4(t.backproject)},
                                   {"score", round4(t.score)},
                                   {"batch_size", 1}}}};
    if (s.result.decided) align3d::add_decision_json(summary["samples"][s.key], s.result.decision);
  }
  if (inspector.calibration()) summary["calibration"] = align3d::calibration_json(*inspector.calibration());
  summary["finished"] = now_local();
  staged.add_text("scores.json", summary.dump(2) + "\n");
  const auto earlier = folder.earlier_outputs();
  staged.commit();
  folder.remove_earlier_outputs(earlier, new_names);
  std::cerr << "align3d-inspect: scored " << samples.size() << " sample(s), " << failed.size() << " failed -> " << a.out
            << "/scores.json\n";
  return failed.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const auto main_entered = std::chrono::steady_clock::now();
  try {
    return run(parse(argc, argv), main_entered);
  } catch (const align3d::Error& err) {
    std::cerr << err.what() << "\n";
  } catch (const align3d::NpyError& err) {
    std::cerr << err.what() << "\n";
  } catch (const std::exception& err) {  // e.g. std::bad_alloc, filesystem errors: still one line
    std::cerr << "align3d-inspect: " << err.what() << "\n";
  }
  return 2;
}
