#include "target/iscsi/text.h"

#include <algorithm>
#include <charconv>

namespace cairn::target::iscsi {
namespace {

// RFC 7143 section 6.1: key names use letters, digits, '.', '-', '+', '@', '_'.
bool valid_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return false;
  }
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '+' || c == '@' || c == '_';
  });
}

std::vector<std::string_view> split_list(std::string_view v) {
  std::vector<std::string_view> out;
  while (true) {
    auto comma = v.find(',');
    out.push_back(v.substr(0, comma));
    if (comma == std::string_view::npos) {
      break;
    }
    v.remove_prefix(comma + 1);
  }
  return out;
}

enum class Kind { digest, number_min, number_max, declared_number, bool_and, bool_or, obsolete };

struct KeyRule {
  std::string_view name;
  Kind kind;
  uint64_t low = 0;
  uint64_t high = 0;
  bool session_wide = false;  // Irrelevant in a discovery session
};

constexpr KeyRule kRules[] = {
    {"HeaderDigest", Kind::digest},
    {"DataDigest", Kind::digest},
    {"MaxRecvDataSegmentLength", Kind::declared_number, 512, (1u << 24) - 1},
    {"MaxBurstLength", Kind::number_min, 512, (1u << 24) - 1, true},
    {"FirstBurstLength", Kind::number_min, 512, (1u << 24) - 1, true},
    {"MaxOutstandingR2T", Kind::number_min, 1, 65535, true},
    {"MaxConnections", Kind::number_min, 1, 65535, true},
    {"ErrorRecoveryLevel", Kind::number_min, 0, 2},
    {"DefaultTime2Wait", Kind::number_max, 0, 3600},
    {"DefaultTime2Retain", Kind::number_min, 0, 3600},
    {"ImmediateData", Kind::bool_and, 0, 0, true},
    {"InitialR2T", Kind::bool_or, 0, 0, true},
    {"DataPDUInOrder", Kind::bool_or, 0, 0, true},
    {"DataSequenceInOrder", Kind::bool_or, 0, 0, true},
    // RFC 3720 keys RFC 7143 removed; old initiators still offer "No".
    {"IFMarker", Kind::obsolete},
    {"OFMarker", Kind::obsolete},
    {"IFMarkInt", Kind::obsolete},
    {"OFMarkInt", Kind::obsolete},
};

const KeyRule* rule_for(std::string_view key) {
  for (const KeyRule& r : kRules) {
    if (r.name == key) {
      return &r;
    }
  }
  return nullptr;
}

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "Yes") {
    return true;
  }
  if (v == "No") {
    return false;
  }
  return std::nullopt;
}

const char* yes_no(bool b) {
  return b ? "Yes" : "No";
}

}  // namespace

std::optional<KeyValues> parse_text(std::span<const std::byte> text) {
  if (text.size() > kMaxTextBytes) {
    return std::nullopt;
  }
  std::string_view all(reinterpret_cast<const char*>(text.data()), text.size());
  KeyValues out;
  while (!all.empty()) {
    auto nul = all.find('\0');
    std::string_view pair = all.substr(0, nul);
    all.remove_prefix(nul == std::string_view::npos ? all.size() : nul + 1);
    if (pair.empty()) {
      // Padding NULs after the last pair.
      if (all.find_first_not_of('\0') == std::string_view::npos) {
        break;
      }
      return std::nullopt;
    }
    auto eq = pair.find('=');
    if (eq == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view key = pair.substr(0, eq);
    std::string_view value = pair.substr(eq + 1);
    if (!valid_key(key) || value.size() > kMaxValueBytes || out.size() >= kMaxKeys) {
      return std::nullopt;
    }
    out.emplace_back(std::string(key), std::string(value));
  }
  return out;
}

void append_text(std::vector<std::byte>& out, std::string_view key, std::string_view value) {
  auto put = [&](std::string_view s) {
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out.insert(out.end(), p, p + s.size());
  };
  put(key);
  out.push_back(std::byte{'='});
  put(value);
  out.push_back(std::byte{0});
}

std::optional<uint64_t> parse_number(std::string_view v) {
  if (v.empty()) {
    return std::nullopt;
  }
  int base = 10;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    base = 16;
    v.remove_prefix(2);
  }
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n, base);
  if (ec != std::errc() || end != v.data() + v.size()) {
    return std::nullopt;
  }
  return n;
}

Negotiator::Negotiator(const TargetLimits& limits, bool discovery)
    : limits_(limits), discovery_(discovery) {
  params_.target_max_recv = limits.max_recv_data_segment;
}

bool Negotiator::knows(std::string_view key) const {
  return rule_for(key) != nullptr;
}

void Negotiator::declare(std::vector<std::byte>& out) {
  if (declared_) {
    return;
  }
  declared_ = true;
  append_text(out, "MaxRecvDataSegmentLength", std::to_string(limits_.max_recv_data_segment));
}

bool Negotiator::offer(const std::string& key, const std::string& value,
                       std::vector<std::byte>& out) {
  const KeyRule* rule = rule_for(key);
  if (rule == nullptr) {
    append_text(out, key, "NotUnderstood");
    return true;
  }
  if (!seen_.insert(key).second) {
    return false;  // negotiated twice (section 6.2): the login fails
  }
  if (rule->session_wide && discovery_) {
    append_text(out, key, "Irrelevant");
    return true;
  }
  switch (rule->kind) {
    case Kind::digest: {
      std::string_view pick;
      for (std::string_view choice : split_list(value)) {
        if (choice == "None" || choice == "CRC32C") {
          pick = choice;
          break;
        }
      }
      if (pick.empty()) {
        append_text(out, key, "Reject");
        return true;
      }
      (key == "HeaderDigest" ? params_.header_digest : params_.data_digest) = pick == "CRC32C";
      append_text(out, key, pick);
      return true;
    }
    case Kind::obsolete:
      append_text(out, key, key.ends_with("Int") ? "Irrelevant" : "No");
      return true;
    case Kind::bool_and:
    case Kind::bool_or: {
      auto b = parse_bool(value);
      if (!b) {
        append_text(out, key, "Reject");
        return true;
      }
      bool result = false;
      if (key == "ImmediateData") {
        result = params_.immediate_data = *b && limits_.immediate_data;
      } else if (key == "InitialR2T") {
        result = params_.initial_r2t = *b || limits_.initial_r2t;
      } else if (key == "DataPDUInOrder") {
        result = params_.data_pdu_in_order = *b || limits_.data_pdu_in_order;
      } else {
        result = params_.data_sequence_in_order = *b || limits_.data_sequence_in_order;
      }
      append_text(out, key, yes_no(result));
      return true;
    }
    case Kind::declared_number:
    case Kind::number_min:
    case Kind::number_max:
      break;
  }
  auto n = parse_number(value);
  if (!n || *n < rule->low || *n > rule->high) {
    append_text(out, key, "Reject");
    return true;
  }
  auto v = static_cast<uint32_t>(*n);
  if (key == "MaxRecvDataSegmentLength") {
    params_.initiator_max_recv = v;  // declarative: no answer
    return true;
  }
  uint32_t result = v;
  if (key == "MaxBurstLength") {
    result = params_.max_burst = std::min(v, limits_.max_burst);
  } else if (key == "FirstBurstLength") {
    result = params_.first_burst = std::min(v, limits_.first_burst);
  } else if (key == "MaxOutstandingR2T") {
    result = params_.max_outstanding_r2t = std::min(v, limits_.max_outstanding_r2t);
  } else if (key == "MaxConnections") {
    result = params_.max_connections = 1;
  } else if (key == "ErrorRecoveryLevel") {
    result = params_.error_recovery_level = 0;
  } else if (key == "DefaultTime2Wait") {
    result = params_.default_time2wait = std::max(v, limits_.default_time2wait);
  } else if (key == "DefaultTime2Retain") {
    result = params_.default_time2retain = std::min(v, limits_.default_time2retain);
  }
  append_text(out, key, std::to_string(result));
  return true;
}

SessionParams Negotiator::params() const {
  SessionParams p = params_;
  if (!declared_) {
    p.target_max_recv = 8192;  // never declared: the default applies (section 13.12)
  }
  p.first_burst = std::min(p.first_burst, p.max_burst);
  return p;
}

}  // namespace cairn::target::iscsi
