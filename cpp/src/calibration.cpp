// Calibration file (docs/runtime-spec.md 13.2): the same checks, order and messages as
// align3d_rt/artifacts/calibration.py:load_calibration and check_source.
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include "align3d/decisions.hpp"
#include "align3d/inspector.hpp"
#include "bundle.hpp"

namespace align3d {
namespace fs = std::filesystem;
namespace {

const char* kFormat = "align3d_rt.calibration";
const char* kDigestKey = "calibration_sha256";
const char* kRerun = "re-run align3d-rt calibrate";

/// str(pathlib.PurePosixPath(p)): repeated and trailing slashes and "." parts dropped.
std::string posix_path_str(const std::string& p) {
  if (p.empty()) return ".";
  std::string root = p[0] == '/' ? (p.size() > 1 && p[1] == '/' && (p.size() < 3 || p[2] != '/') ? "//" : "/") : "";
  std::string out;
  std::stringstream parts(p);
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.empty() || part == ".") continue;
    out += (out.empty() ? "" : "/") + part;
  }
  out = root + out;
  return out.empty() ? "." : out;
}

std::string py_str_repr(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == q)
      out += std::string("\\") + q;
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\t')
      out += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else
      out += c;
  }
  return out + q;
}

/// Python repr of a parsed JSON value (for messages).
std::string py_repr(const nlohmann::json& v) {
  if (v.is_string()) return py_str_repr(v.get<std::string>());
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_float()) {
    const double d = v.get<double>();
    return std::isfinite(d) ? python_float_repr(d) : (std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf"));
  }
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + py_repr(v[i]);
    return out + "]";
  }
  if (v.is_object()) {
    std::string out = "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it, first = false)
      out += (first ? "" : ", ") + py_str_repr(it.key()) + ": " + py_repr(it.value());
    return out + "}";
  }
  return v.dump();  // integers
}

bool is_number(const nlohmann::json& v) { return v.is_number(); }  // nlohmann: bools are not numbers
bool is_int(const nlohmann::json& v) { return v.is_number_integer(); }
bool is_finite_number(const nlohmann::json& v) { return v.is_number() && std::isfinite(v.get<double>()); }
bool int_below(const nlohmann::json& v, std::int64_t bound) {  // v < bound for an integer v
  if (v.is_number_unsigned()) return bound > 0 && v.get<std::uint64_t>() < static_cast<std::uint64_t>(bound);
  return v.get<std::int64_t>() < bound;
}

const nlohmann::json& member(const nlohmann::json& obj, const char* key) {  // obj.get(key) (null when absent)
  static const nlohmann::json kNone;
  if (!obj.is_object()) return kNone;
  const auto it = obj.find(key);
  return it == obj.end() ? kNone : *it;
}

/// Python's json module reads NaN, Infinity and -Infinity; nlohmann does not. Outside strings they
/// become null here and `nonfinite` is set, so the file is refused at the digest step as in Python.
std::string replace_nonfinite(const std::string& text, bool& nonfinite) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"')
        in_string = false;
      continue;
    }
    bool replaced = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      const size_t len = std::strlen(token);
      if (!replaced && text.compare(i, len, token) == 0) {
        out += "null";
        i += len - 1;
        replaced = nonfinite = true;
      }
    }
    if (replaced) continue;
    if (c == '"') in_string = true;
    out += c;
  }
  return out;
}

nlohmann::json read_json(const std::string& path, bool& nonfinite) {
  auto fail = [&](const std::string& detail) { throw Error(path + ": unreadable calibration (" + detail + ")"); };
  // as io_utils.read_json: a FIFO or device would block or never end; no calibration is near 64 MiB
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!ec && fs::exists(st) && !fs::is_regular_file(st)) fail("JSONFileError: not a regular file");
  if (!ec && fs::is_regular_file(st) && fs::file_size(path, ec) > (std::uintmax_t{64} << 20) && !ec)
    fail("JSONFileError: larger than 64 MiB; not a file this tool wrote");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int e = errno;
    if (e == ENOENT) fail("FileNotFoundError: [Errno 2] No such file or directory: " + py_str_repr(path));
    if (e == EACCES) fail("PermissionError: [Errno 13] Permission denied: " + py_str_repr(path));
    fail("OSError: [Errno " + std::to_string(e) + "] " + std::strerror(e) + ": " + py_str_repr(path));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("OSError: read failed");
  const std::string s = text.str();
  if (s.rfind("\xEF\xBB\xBF", 0) == 0)
    fail("JSONDecodeError: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)");
  try {
    return nlohmann::json::parse(replace_nonfinite(s, nonfinite));
  } catch (const nlohmann::json::exception& err) {
    fail(std::string("JSONDecodeError: ") + err.what());
  }
  return {};
}

void check_thresholds(const nlohmann::json& data, const std::string& path) {
  auto fail = [&](const std::string& problem) { throw Error(path + ": " + problem); };
  for (const char* section : {"object", "point"}) {
    const nlohmann::json& block = member(data, section);
    if (!block.is_object()) fail(std::string(section) + " thresholds are missing");
    for (const char* key : {"threshold", "lo", "hi"}) {
      const std::string name = std::string(section) + "." + key;
      if (!block.contains(key)) fail(name + " is missing");
      if (!is_number(block[key])) fail(name + " is not a number (" + py_repr(block[key]) + ")");
      if (!is_finite_number(block[key])) fail(name + " is not finite (" + py_repr(block[key]) + ")");
    }
  }
  for (const char* section : {"object", "point"}) {
    const auto& b = data[section];
    const double t = b["threshold"].get<double>(), lo = b["lo"].get<double>(), hi = b["hi"].get<double>();
    if (!(lo < hi) || !(lo <= t && t <= hi))
      fail(std::string("inverted or degenerate ") + section + " thresholds (threshold " + python_float_repr(t) +
           ", lo " + python_float_repr(lo) + ", hi " + python_float_repr(hi) +
           ": needs lo < hi and lo <= threshold <= hi); " + kRerun);
  }
  const nlohmann::json& regions = member(data, "regions");
  if (!regions.is_object()) fail("regions settings are missing");
  const nlohmann::json& mp = member(regions, "min_points");
  const nlohmann::json& sf = member(regions, "spacing_factor");
  if (!is_int(mp) || int_below(mp, 1)) fail("regions.min_points must be an integer >= 1 (got " + py_repr(mp) + ")");
  if (!is_finite_number(sf) || !(sf.get<double>() > 0))
    fail("regions.spacing_factor must be a finite number > 0 (got " + py_repr(sf) + ")");
}

void check_other_fields(const nlohmann::json& data, const std::string& path) {
  auto bad = [&](const std::string& key, const std::string& why) {
    throw Error(path + ": bad calibration field " + py_str_repr(key) + " (" + why + ")");
  };
  const nlohmann::json& product = member(data, "product");
  if (!product.is_string() || product.get<std::string>().empty()) bad("product", "a non-empty string");
  const nlohmann::json& source = member(data, "source");
  const nlohmann::json& kind = member(source, "kind");
  const bool kind_ok = kind == "bundle" || kind == "run";
  if (!kind_ok || !member(source, kind == "bundle" ? "manifest_sha256" : "run_id").is_string())
    bad("source", "kind 'bundle' with manifest_sha256, or kind 'run' with run_id");
  const nlohmann::json& scoring = member(data, "scoring");
  if (scoring != "default" && scoring != "reference") bad("scoring", "one of default, reference");
  for (const char* key : {"dataset", "category"})
    if (!member(data, key).is_string()) bad(key, "a string");
  const nlohmann::json& rule = member(data, "rule");
  const nlohmann::json& name = member(rule, "name");
  if (!rule.is_object() || (name != "conformal" && name != "pac" && name != "f1" && name != "false-accept"))
    bad("rule", "an object whose name is one of conformal, pac, f1, false-accept");
  for (const char* key : {"n_good", "n_bad"})
    if (!is_int(member(data, key)) || int_below(member(data, key), 0)) bad(key, "an integer >= 0");
  for (const char* section : {"object", "point"}) {
    const nlohmann::json& rank = member(data[section], "rank");
    if (!rank.is_null() && !is_int(rank)) bad(std::string(section) + ".rank", "an integer or null");
  }
  const nlohmann::json& scores = member(data, "good_object_scores");
  bool scores_ok = scores.is_array();
  if (scores_ok)
    for (const auto& x : scores) scores_ok = scores_ok && is_finite_number(x);
  if (!scores_ok) bad("good_object_scores", "a list of finite numbers");
}

}  // namespace

Calibration load_calibration(const std::string& given) {
  const std::string path = posix_path_str(given);
  if (fs::is_directory(path)) throw Error(path + ": unreadable calibration (a folder, not a calibration file)");
  bool nonfinite = false;
  const nlohmann::json data = read_json(path, nonfinite);
  if (!data.is_object() || member(data, "format") != kFormat) throw Error(path + ": not an " + kFormat + " file");
  const nlohmann::json& version = member(data, "format_version");
  if (!(version.is_number() && version == 1)) {
    const bool newer = is_int(version) && !int_below(version, 2);
    throw Error(path + ": calibration format version " + py_repr(version) + ", this align3d_rt reads version 1; " +
                (newer ? "upgrade align3d_rt, or " : "") + kRerun);
  }
  if (nonfinite || has_nonfinite(data))
    throw Error(path + ": calibration holds NaN or infinite numbers (the file was edited or is corrupt); " + kRerun);
  nlohmann::json body = data;
  body.erase(kDigestKey);
  std::string digest;
  try {
    digest = sha256_hex(canonical_json(body));
  } catch (const std::domain_error&) {
    throw Error(path + ": calibration holds NaN or infinite numbers (the file was edited or is corrupt); " + kRerun);
  }
  const nlohmann::json& recorded = member(data, kDigestKey);
  if (!recorded.is_string() || recorded.get<std::string>() != digest)
    throw Error(path + ": calibration checksum mismatch (the file was edited or is corrupt); " + kRerun);
  check_thresholds(data, path);
  check_other_fields(data, path);

  Calibration cal;
  cal.path = path;
  cal.sha256 = digest;
  cal.product = data["product"].get<std::string>();
  cal.source_kind = data["source"]["kind"].get<std::string>();
  cal.source_hash = data["source"][cal.source_kind == "bundle" ? "manifest_sha256" : "run_id"].get<std::string>();
  cal.scoring = data["scoring"].get<std::string>();
  cal.dataset = data["dataset"].get<std::string>();
  cal.category = data["category"].get<std::string>();
  cal.rule_json = data["rule"].dump();
  cal.object_threshold = data["object"]["threshold"].get<double>();
  cal.object_lo = data["object"]["lo"].get<double>();
  cal.object_hi = data["object"]["hi"].get<double>();
  cal.point_threshold = data["point"]["threshold"].get<double>();
  cal.point_lo = data["point"]["lo"].get<double>();
  cal.point_hi = data["point"]["hi"].get<double>();
  const auto& mp = data["regions"]["min_points"];  // an int >= 1; a huge one keeps every region out
  cal.min_points = mp.is_number_unsigned() && mp.get<std::uint64_t>() > INT64_MAX ? INT64_MAX : mp.get<std::int64_t>();
  cal.spacing_factor = data["regions"]["spacing_factor"].get<double>();
  return cal;
}

void apply_calibration_choices(const Calibration& cal, std::string& dataset, std::string& category) {
  for (auto [flag, given, recorded] : {std::make_tuple("--dataset", &dataset, &cal.dataset),
                                       std::make_tuple("--category", &category, &cal.category)}) {
    if (!given->empty() && *given != *recorded)
      throw Error(cal.path + ": calibration was made with " + flag + " " + py_str_repr(*recorded) + "; " + flag + " " +
                  py_str_repr(*given) + " differs (leave " + flag + " out to use the calibration's)");
    *given = *recorded;
  }
}

void check_calibration_scoring(const Calibration& cal) {
  if (cal.scoring != "default")
    throw Error(cal.path + ": calibration was made with " + cal.scoring +
                " scoring, this inspector uses default "
                "(it has no reference scoring, spec 12); calibrate again with --scoring ours");
}

void check_calibration_source(const Calibration& cal, const std::string& manifest_sha256) {
  if (cal.source_kind == "bundle" && cal.source_hash == manifest_sha256) return;
  throw Error(cal.path + ": calibration is for " + cal.source_kind + " " + cal.source_hash + ", this bundle is " +
              manifest_sha256);
}

}  // namespace align3d
