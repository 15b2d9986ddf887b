// Canonical JSON of the manifest checksum (docs/runtime-spec.md 2.3): Python's
// json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "bundle.hpp"

namespace align3d {
namespace {

void append_u16(std::string& out, unsigned unit) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\u%04x", unit & 0xFFFFu);
  out += buf;
}

// Decodes one UTF-8 code point starting at s[i] (nlohmann only hands out valid UTF-8).
unsigned next_code_point(const std::string& s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i++]);
  if (b0 < 0x80) return b0;
  int extra = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : 1;
  unsigned cp = b0 & (0x3Fu >> extra);
  for (int k = 0; k < extra; ++k) {
    if (i >= s.size()) throw std::domain_error("truncated UTF-8 in manifest string");
    cp = (cp << 6) | (static_cast<unsigned char>(s[i++]) & 0x3Fu);
  }
  return cp;
}

void append_string(std::string& out, const std::string& s) {
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    const unsigned cp = next_code_point(s, i);
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (cp >= 0x20 && cp <= 0x7E) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x10000) {
      append_u16(out, cp);
    } else {
      const unsigned v = cp - 0x10000;
      append_u16(out, 0xD800 + (v >> 10));
      append_u16(out, 0xDC00 + (v & 0x3FF));
    }
  }
  out.push_back('"');
}

void append(std::string& out, const nlohmann::json& v) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::object: {
      out.push_back('{');
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {  // std::map: keys in byte (= code point) order
        if (!first) out.push_back(',');
        first = false;
        append_string(out, it.key());
        out.push_back(':');
        append(out, it.value());
      }
      out.push_back('}');
      return;
    }
    case T::array: {
      out.push_back('[');
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out.push_back(',');
        append(out, v[i]);
      }
      out.push_back(']');
      return;
    }
    case T::string: append_string(out, v.get_ref<const std::string&>()); return;
    case T::boolean: out += v.get<bool>() ? "true" : "false"; return;
    case T::null: out += "null"; return;
    case T::number_integer: out += std::to_string(v.get<std::int64_t>()); return;
    case T::number_unsigned: out += std::to_string(v.get<std::uint64_t>()); return;
    case T::number_float: out += python_float_repr(v.get<double>()); return;
    default: throw std::domain_error("unsupported JSON value in manifest");
  }
}

}  // namespace

std::string python_float_repr(double value) {
  if (!std::isfinite(value)) throw std::domain_error("NaN or infinite number");
  char buf[64];
  // Shortest round-trip digits in scientific form: "d[.ddd]e[+-]XX".
  auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t epos = sci.find('e');
  std::string digits = sci.substr(0, epos);
  if (digits.size() > 1) digits.erase(1, 1);          // drop the '.'
  const int exp10 = std::stoi(sci.substr(epos + 1));  // value = d.ddd x 10^exp10
  const int e = exp10 + 1;                            // value = 0.ddd x 10^e
  const int n = static_cast<int>(digits.size());
  std::string out;
  if (-4 < e && e <= 16) {
    if (e <= 0) out = "0." + std::string(-e, '0') + digits;
    else if (e >= n)
      out = digits + std::string(e - n, '0') + ".0";
    else
      out = digits.substr(0, e) + "." + digits.substr(e);
  } else {
    out = digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    const int x = e - 1;
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
    out += ebuf;
  }
  return sign + out;
}

std::string canonical_json(const nlohmann::json& value) {
  std::string out;
  append(out, value);
  return out;
}

std::string canonical_manifest_text(const nlohmann::json& manifest) {
  nlohmann::json body = manifest;
  if (body.is_object()) body.erase("manifest_sha256");
  return canonical_json(body);
}

}  // namespace align3d
