// Strict reading of JSON objects, for the library's JSON formats (the
// tenants file, tenant specs): unknown and repeated fields refused, every
// error naming the field's path and, where the text is at hand, its line and
// column. simdjson parses; this only checks shapes and places errors.
//
// Thread safety: not thread-safe; one reader per parse.

#ifndef TENANCY_LIB_JSON_READER_H_
#define TENANCY_LIB_JSON_READER_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "simdjson.h"
#include "status_macros.h"
#include "str_cat.h"

namespace tenancy::internal {

// ---------------------------------------------------------------------------
// Where things are in the text
// ---------------------------------------------------------------------------

// One step of a field path: an object member (by name, and which occurrence
// of that name) or an array element.
struct PathPart {
  std::string key;
  size_t index = 0;
  bool is_index = false;
  size_t occurrence = 0;
};
using Path = std::vector<PathPart>;

inline Path Child(Path path, std::string_view key, size_t occurrence = 0) {
  path.push_back(PathPart{std::string(key), 0, false, occurrence});
  return path;
}
inline Path Element(Path path, size_t index) {
  path.push_back(PathPart{"", index, true, 0});
  return path;
}

// "tenants[2].quota.storage_mb"; `root` for the root.
inline std::string PathText(const Path& path, std::string_view root = "the file") {
  std::string out;
  for (const PathPart& part : path) {
    if (part.is_index) {
      out += StrCat("[", part.index, "]");
    } else {
      if (!out.empty()) out += ".";
      out += part.key;
    }
  }
  return out.empty() ? std::string(root) : out;
}

// A small JSON scanner, only for telling the operator where something is:
// the text is parsed by simdjson, and this runs only to place an error.
class JsonScanner {
 public:
  static constexpr size_t kNone = std::string_view::npos;

  explicit JsonScanner(std::string_view text) : text_(text) {}

  // The offset of the value at `path` (for an object member, of its name), or
  // kNone if the path is not in the text.
  size_t Find(const Path& path) {
    pos_ = 0;
    return FindIn(path, 0, 0);
  }

  // The offset of the first syntax error, or kNone if the scanner finds none
  // (simdjson also refuses, e.g., invalid UTF-8).
  size_t FirstError() {
    pos_ = 0;
    SkipWs();
    if (!SkipValue(0)) return pos_;
    SkipWs();
    return pos_ == text_.size() ? kNone : pos_;
  }

 private:
  static constexpr int kMaxDepth = 1024;

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }

  void SkipWs() {
    while (!AtEnd() && (Peek() == ' ' || Peek() == '\t' || Peek() == '\n' || Peek() == '\r')) {
      ++pos_;
    }
  }

  bool Expect(char c) {
    SkipWs();
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  static bool IsHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }

  // A string at pos_; its content (simple escapes decoded) into `out`.
  bool String(std::string* out) {
    if (Peek() != '"') return false;
    ++pos_;
    while (!AtEnd()) {
      char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        if (out != nullptr) out->push_back(c);
        ++pos_;
        continue;
      }
      ++pos_;
      char e = Peek();
      static constexpr std::string_view kEscapes = "\"\\/bfnrt";
      static constexpr std::string_view kDecoded = "\"\\/\b\f\n\r\t";
      size_t k = kEscapes.find(e);
      if (k != std::string_view::npos && e != '\0') {
        if (out != nullptr) out->push_back(kDecoded[k]);
        ++pos_;
      } else if (e == 'u') {
        ++pos_;
        for (int i = 0; i < 4; ++i, ++pos_) {
          if (!IsHex(Peek())) return false;
        }
        if (out != nullptr) out->push_back('?');
      } else {
        return false;
      }
    }
    return false;
  }

  bool Digits() {
    size_t start = pos_;
    while (Peek() >= '0' && Peek() <= '9') ++pos_;
    return pos_ > start;
  }

  bool Number() {
    if (Peek() == '-') ++pos_;
    if (Peek() == '0') {
      ++pos_;
    } else if (!Digits()) {
      return false;
    }
    if (Peek() == '.') {
      ++pos_;
      if (!Digits()) return false;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++pos_;
      if (Peek() == '+' || Peek() == '-') ++pos_;
      if (!Digits()) return false;
    }
    return true;
  }

  bool Literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  // Skips one value at pos_ (after whitespace); false at a syntax error,
  // with pos_ at it.
  bool SkipValue(int depth) {
    SkipWs();
    if (depth > kMaxDepth) return false;
    switch (Peek()) {
      case '{': {
        ++pos_;
        SkipWs();
        if (Peek() == '}') {
          ++pos_;
          return true;
        }
        while (true) {
          SkipWs();
          if (!String(nullptr) || !Expect(':') || !SkipValue(depth + 1)) {
            return false;
          }
          SkipWs();
          if (Peek() == ',') {
            ++pos_;
            continue;
          }
          if (Peek() == '}') {
            ++pos_;
            return true;
          }
          return false;
        }
      }
      case '[': {
        ++pos_;
        SkipWs();
        if (Peek() == ']') {
          ++pos_;
          return true;
        }
        while (true) {
          if (!SkipValue(depth + 1)) return false;
          SkipWs();
          if (Peek() == ',') {
            ++pos_;
            continue;
          }
          if (Peek() == ']') {
            ++pos_;
            return true;
          }
          return false;
        }
      }
      case '"':
        return String(nullptr);
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        return Number();
    }
  }

  size_t FindIn(const Path& path, size_t k, int depth) {
    SkipWs();
    if (k == path.size()) return pos_;
    const PathPart& part = path[k];
    if (!part.is_index) {
      if (!Expect('{')) return kNone;
      SkipWs();
      if (Peek() == '}') return kNone;
      size_t seen = 0;
      while (true) {
        SkipWs();
        size_t key_start = pos_;
        std::string key;
        if (!String(&key) || !Expect(':')) return kNone;
        if (key == part.key && seen++ == part.occurrence) {
          return k + 1 == path.size() ? key_start : FindIn(path, k + 1, depth + 1);
        }
        // On to the next member; a '}' here means the path is not there.
        if (!SkipValue(depth + 1) || !Expect(',')) return kNone;
      }
    }
    if (!Expect('[')) return kNone;
    for (size_t i = 0;; ++i) {
      SkipWs();
      if (i == part.index) return FindIn(path, k + 1, depth + 1);
      if (!SkipValue(depth + 1) || !Expect(',')) return kNone;
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// " (line L, column C)" for a byte offset, or "" for kNone.
inline std::string LineAndColumn(std::string_view text, size_t offset) {
  if (offset == JsonScanner::kNone || offset > text.size()) return "";
  size_t line = 1, line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return StrCat(" (line ", line, ", column ", offset - line_start + 1, ")");
}

// Builds the errors of one parse: "<path>: <what> (line L, column C)".
class ErrorBuilder {
 public:
  // `root` names the whole document in messages ("the file", "spec").
  explicit ErrorBuilder(std::string_view text, std::string_view root = "the file")
      : text_(text), root_(root) {}

  absl::Status At(const Path& path, std::string_view what) const {
    JsonScanner scanner(text_);
    return absl::InvalidArgumentError(
        StrCat(PathText(path, root_), ": ", what, LineAndColumn(text_, scanner.Find(path))));
  }

 private:
  std::string_view text_;
  std::string_view root_;
};

// ---------------------------------------------------------------------------
// Strict field reading
// ---------------------------------------------------------------------------

// Reads one object field by field. Every getter marks its field as read;
// Finish() refuses the fields nobody asked for. A field given twice is
// refused when it is asked for.
class FieldReader {
 public:
  FieldReader(simdjson::dom::object object, Path path, const ErrorBuilder& errors)
      : object_(object), path_(std::move(path)), errors_(errors) {}
  FieldReader(const FieldReader&) = delete;
  FieldReader& operator=(const FieldReader&) = delete;

  const Path& path() const { return path_; }
  Path PathOf(std::string_view field) const { return Child(path_, field); }

  absl::Status Error(std::string_view field, std::string_view what) const {
    return errors_.At(PathOf(field), what);
  }
  absl::Status ErrorAt(const Path& path, std::string_view what) const {
    return errors_.At(path, what);
  }

  absl::StatusOr<std::optional<simdjson::dom::element>> Find(std::string_view field) {
    read_.insert(std::string(field));
    std::optional<simdjson::dom::element> found;
    size_t count = 0;
    for (auto member : object_) {
      if (member.key != field) continue;
      if (count++ == 1) {
        return errors_.At(Child(path_, field, 1), "given twice");
      }
      found = member.value;
    }
    return found;
  }

  absl::StatusOr<std::optional<std::string_view>> String(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<std::string_view>();
    std::string_view s;
    if (e->get_string().get(s)) return Error(field, "must be a string");
    return std::optional<std::string_view>(s);
  }

  absl::StatusOr<std::optional<bool>> Bool(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<bool>();
    bool b;
    if (e->get_bool().get(b)) return Error(field, "must be true or false");
    return std::optional<bool>(b);
  }

  // A finite number >= 0; fractions allowed.
  absl::StatusOr<std::optional<double>> NonNegativeNumber(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<double>();
    double d;
    if (!e->is_number() || e->get_double().get(d) || !std::isfinite(d) || !(d >= 0)) {
      return Error(field, "must be a non-negative number");
    }
    return std::optional<double>(d);
  }

  // An integer >= 0 (5, or 5.0 / 5e0: doubles that are exact integers).
  absl::StatusOr<std::optional<uint64_t>> Uint(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<uint64_t>();
    std::optional<uint64_t> value = AsUint(*e);
    if (!value.has_value()) return Error(field, "must be a non-negative integer");
    return value;
  }

  absl::StatusOr<std::optional<simdjson::dom::object>> Object(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<simdjson::dom::object>();
    simdjson::dom::object o;
    if (e->get_object().get(o)) return Error(field, "must be an object");
    return std::optional<simdjson::dom::object>(o);
  }

  absl::StatusOr<std::optional<simdjson::dom::array>> Array(std::string_view field) {
    TENANCY_ASSIGN_OR_RETURN(auto e, Find(field));
    if (!e.has_value()) return std::optional<simdjson::dom::array>();
    simdjson::dom::array a;
    if (e->get_array().get(a)) return Error(field, "must be an array");
    return std::optional<simdjson::dom::array>(a);
  }

  // Unknown fields are refused, with their place: a misspelt field must not be
  // silently ignored.
  absl::Status Finish() const {
    std::map<std::string, size_t> seen;
    for (auto member : object_) {
      std::string key(member.key);
      size_t occurrence = seen[key]++;
      if (read_.count(key) == 0) {
        return errors_.At(Child(path_, key, occurrence), StrCat("unknown field \"", key, "\""));
      }
    }
    return absl::OkStatus();
  }

  static std::optional<uint64_t> AsUint(simdjson::dom::element e) {
    uint64_t u;
    if (e.is_uint64()) {
      if (e.get_uint64().get(u)) return std::nullopt;
      return u;
    }
    if (e.is_int64()) return std::nullopt;  // negative
    double d;
    if (!e.is_double() || e.get_double().get(d) || !(d >= 0) || d > 9.007199254740992e15 ||
        d != std::floor(d)) {
      return std::nullopt;
    }
    return static_cast<uint64_t>(d);
  }

 private:
  simdjson::dom::object object_;
  Path path_;
  const ErrorBuilder& errors_;
  std::set<std::string> read_;
};

// Limit class names as both the registry and the limiter accept them: 1 to 8
// '/'-separated segments of [a-z0-9_.-], at most 128 bytes.

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_JSON_READER_H_
