// cairn: the operator's CLI (docs/operations.md, "The cairn CLI").
//
//   cairn [--admin HOST:PORT] [--json] volume create NAME SIZE [--block-size 512|4096]
//         [--chunk-size 4K..64K] [--write-through] [--read-only] [--description TEXT]
//   cairn volume list | info NAME | resize NAME SIZE | delete NAME
//   cairn volume access NAME [--allow IQN[,IQN...]] [--chap USER:SECRET]
//         [--mutual-chap USER:SECRET] [--clear]
//   cairn stats | metrics
//   cairn [--nbd HOST:PORT] [--quiet] import FILE|NBD-URI VOLUME
//   cairn [--nbd HOST:PORT] [--quiet] export VOLUME FILE|NBD-URI
//
// Volume commands talk to cairnd's admin API (default 127.0.0.1:10819); import and export
// copy data through libnbd to nbd://HOST:PORT/VOLUME (default port 10809). Output is for
// people unless --json is given. Errors are one sentence on stderr; the exit status is 1 for
// a failed operation and 2 for a usage error.
#include <array>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "base/config.h"
#include "blockmap/volume_config.h"
#include "tools/cli/admin_client.h"
#include "tools/cli/cli_error.h"
#include "tools/cli/copy.h"
#include "tools/cli/endpoint.h"
#include "tools/cli/progress.h"

namespace cairn::cli {
namespace {

namespace json = boost::json;

class UsageError : public CliError {
 public:
  using CliError::CliError;
};

constexpr const char* kUsage =
    "usage: cairn [--admin HOST:PORT] [--nbd HOST:PORT] [--json] [--quiet] COMMAND\n"
    "  volume create NAME SIZE [--block-size 512|4096] [--chunk-size 4K..64K]\n"
    "                [--write-through] [--read-only] [--description TEXT]\n"
    "  volume list\n"
    "  volume info NAME\n"
    "  volume resize NAME SIZE\n"
    "  volume delete NAME\n"
    "  volume access NAME [--allow IQN[,IQN...]] [--chap USER:SECRET]\n"
    "                [--mutual-chap USER:SECRET] [--clear]\n"
    "                                 show or set who may log in over iSCSI\n"
    "  stats                          the chunk store's space and dedup figures\n"
    "  metrics                        cairnd's Prometheus metrics\n"
    "  import FILE|NBD-URI VOLUME     copy a disk image into a volume\n"
    "  export VOLUME FILE|NBD-URI     copy a volume out\n"
    "SIZE takes bytes or a K, M, G or T suffix (powers of 1024).\n"
    "The admin API defaults to 127.0.0.1:10819 and NBD to 127.0.0.1:10809.\n";

struct Args {
  std::vector<std::string> words;           // positional arguments
  std::map<std::string, std::string> opts;  // --name -> value ("" for flags)
};

// Options that take a value; every other --option is a flag.
bool takes_value(const std::string& name) {
  return name == "--admin" || name == "--nbd" || name == "--block-size" || name == "--chunk-size" ||
         name == "--description" || name == "--allow" || name == "--chap" ||
         name == "--mutual-chap";
}

bool is_flag(const std::string& name) {
  return name == "--json" || name == "--quiet" || name == "--write-through" ||
         name == "--read-only" || name == "--help" || name == "--clear";
}

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h") {
      a = "--help";
    } else if (a == "-q") {
      a = "--quiet";
    }
    if (!a.starts_with("--") || a == "--") {
      args.words.push_back(a);
      continue;
    }
    std::string value;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (takes_value(a)) {
      if (i + 1 >= argc) {
        throw UsageError(a + " needs a value");
      }
      value = argv[++i];
    }
    if (!takes_value(a) && !is_flag(a)) {
      throw UsageError("unknown option " + a);
    }
    args.opts[a] = value;
  }
  return args;
}

std::pair<std::string, uint16_t> host_port(const std::string& text, const char* what) {
  auto colon = text.rfind(':');
  std::string host = colon == std::string::npos ? text : text.substr(0, colon);
  std::string port = colon == std::string::npos ? "" : text.substr(colon + 1);
  char* end = nullptr;
  unsigned long n = std::strtoul(port.c_str(), &end, 10);
  if (host.empty() || port.empty() || *end != '\0' || n == 0 || n > 65535) {
    throw UsageError(std::string(what) + " expects HOST:PORT, not '" + text + "'");
  }
  return {host, static_cast<uint16_t>(n)};
}

uint64_t size_arg(const std::string& text) {
  try {
    return parse_size(text);
  } catch (const ConfigError&) {
    throw UsageError("'" + text + "' is not a size; use bytes or a K, M, G or T suffix");
  }
}

void check_name(const std::string& name) {
  if (!blockmap::valid_volume_name(name)) {
    throw UsageError("volume name '" + name + "' must match [a-z0-9][a-z0-9.-]{0,62}");
  }
}

class Cli {
 public:
  explicit Cli(Args args) : args_(std::move(args)) {
    auto [admin_host, admin_port] = host_port(opt("--admin", "127.0.0.1:10819"), "--admin");
    admin_.emplace(admin_host, admin_port);
    std::tie(nbd_host_, nbd_port_) = host_port(opt("--nbd", "127.0.0.1:10809"), "--nbd");
    json_ = args_.opts.contains("--json");
  }

  int run();

 private:
  std::string opt(const std::string& name, const std::string& fallback) const {
    auto it = args_.opts.find(name);
    return it == args_.opts.end() ? fallback : it->second;
  }
  const std::string& word(std::size_t i, const char* what) const {
    if (i >= args_.words.size()) {
      throw UsageError(std::string("missing ") + what);
    }
    return args_.words[i];
  }
  void expect_words(std::size_t n) const {
    if (args_.words.size() > n) {
      throw UsageError("unexpected argument '" + args_.words[n] + "'");
    }
  }

  json::value call(const char* method, const std::string& target, const std::string& body = {});
  int volume(const std::string& sub);
  int create();
  int list();
  int info();
  int resize();
  int remove();
  int access();
  int stats();
  int metrics();
  int transfer(bool import);
  void print_json(const json::value& v) const { std::printf("%s\n", json::serialize(v).c_str()); }

  Args args_;
  std::optional<AdminClient> admin_;
  std::string nbd_host_;
  uint16_t nbd_port_ = 0;
  bool json_ = false;
};

// One admin API call; an error answer becomes a CliError carrying cairnd's sentence.
json::value Cli::call(const char* method, const std::string& target, const std::string& body) {
  HttpAnswer answer = admin_->request(method, target, body);
  boost::system::error_code ec;
  json::value v = json::parse(answer.body, ec);
  if (answer.status >= 400) {
    if (!ec && v.is_object() && v.as_object().contains("error") &&
        v.as_object().at("error").is_string()) {
      throw CliError(std::string(v.as_object().at("error").get_string()));
    }
    throw CliError("cairnd answered HTTP " + std::to_string(answer.status));
  }
  if (ec) {
    throw CliError("cairnd sent an answer that is not JSON");
  }
  return v;
}

int Cli::run() {
  const std::string& command = word(0, "command");
  if (command == "volume") {
    return volume(word(1, "volume subcommand: create, list, info, resize or delete"));
  }
  if (command == "stats") {
    expect_words(1);
    return stats();
  }
  if (command == "metrics") {
    expect_words(1);
    return metrics();
  }
  if (command == "import" || command == "export") {
    expect_words(3);
    return transfer(command == "import");
  }
  throw UsageError("unknown command '" + command + "'");
}

int Cli::volume(const std::string& sub) {
  if (sub == "create") {
    return create();
  }
  if (sub == "list" || sub == "ls") {
    expect_words(2);
    return list();
  }
  if (sub == "info") {
    return info();
  }
  if (sub == "resize") {
    return resize();
  }
  if (sub == "delete" || sub == "rm") {
    return remove();
  }
  if (sub == "access") {
    return access();
  }
  throw UsageError("unknown volume subcommand '" + sub + "'");
}

std::string describe_volume(const json::object& v) {
  uint64_t chunk = v.at("chunk_size_bytes").to_number<uint64_t>();
  return human_bytes(v.at("size_bytes").to_number<uint64_t>()) + ", " +
         std::to_string(v.at("block_size_bytes").to_number<uint64_t>()) + "-byte blocks, " +
         human_bytes(chunk) + " chunks, " + std::string(v.at("durability").get_string()) +
         (v.at("read_only").get_bool() ? ", read-only" : "");
}

int Cli::create() {
  const std::string& name = word(2, "volume name");
  uint64_t size = size_arg(word(3, "volume size"));
  expect_words(4);
  check_name(name);
  json::object body;
  body["name"] = name;
  body["size"] = size;
  body["block_size"] = size_arg(opt("--block-size", "4096"));
  body["chunk_size"] = size_arg(opt("--chunk-size", "4096"));
  body["durability"] = args_.opts.contains("--write-through") ? "write-through" : "write-back";
  body["read_only"] = args_.opts.contains("--read-only");
  body["description"] = opt("--description", "");
  json::value v = call("POST", "/v1/volumes", json::serialize(body));
  if (json_) {
    print_json(v);
  } else {
    std::printf("created volume %s (%s)\n", name.c_str(), describe_volume(v.as_object()).c_str());
  }
  return 0;
}

int Cli::list() {
  json::value v = call("GET", "/v1/volumes");
  if (json_) {
    print_json(v);
    return 0;
  }
  const json::array& volumes = v.as_object().at("volumes").as_array();
  if (volumes.empty()) {
    std::printf("no volumes\n");
    return 0;
  }
  std::vector<std::array<std::string, 7>> rows;
  rows.push_back({"NAME", "SIZE", "BLOCK", "CHUNK", "DURABILITY", "MODE", "DESCRIPTION"});
  for (const json::value& e : volumes) {
    const json::object& o = e.as_object();
    rows.push_back({std::string(o.at("name").get_string()),
                    human_bytes(o.at("size_bytes").to_number<uint64_t>()),
                    std::to_string(o.at("block_size_bytes").to_number<uint64_t>()),
                    human_bytes(o.at("chunk_size_bytes").to_number<uint64_t>()),
                    std::string(o.at("durability").get_string()),
                    o.at("read_only").get_bool() ? "ro" : "rw",
                    std::string(o.at("description").get_string())});
  }
  std::array<std::size_t, 7> width{};
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) {
        line += std::string(width[c] - row[c].size() + 2, ' ');
      }
    }
    line.erase(line.find_last_not_of(' ') + 1);
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

int Cli::info() {
  const std::string& name = word(2, "volume name");
  expect_words(3);
  check_name(name);
  json::value v = call("GET", "/v1/volumes/" + name);
  if (json_) {
    print_json(v);
    return 0;
  }
  const json::object& o = v.as_object();
  const json::object& s = o.at("stats").as_object();
  const json::object& st = o.at("store").as_object();
  auto n = [](const json::object& obj, const char* key) {
    return obj.at(key).to_number<uint64_t>();
  };
  std::string description(o.at("description").get_string());
  std::printf("name         %s\n", name.c_str());
  std::printf("size         %s (%llu bytes)\n", human_bytes(n(o, "size_bytes")).c_str(),
              static_cast<unsigned long long>(n(o, "size_bytes")));
  std::printf("block size   %llu bytes\n",
              static_cast<unsigned long long>(n(o, "block_size_bytes")));
  std::printf("chunk size   %s\n", human_bytes(n(o, "chunk_size_bytes")).c_str());
  std::printf("durability   %s\n", std::string(o.at("durability").get_string()).c_str());
  std::printf("read-only    %s\n", o.at("read_only").get_bool() ? "yes" : "no");
  std::printf("description  %s\n", description.empty() ? "-" : description.c_str());
  std::printf("mapped       %s\n", human_bytes(n(s, "mapped_bytes")).c_str());
  std::printf("reads        %llu (%s)\n", static_cast<unsigned long long>(n(s, "reads")),
              human_bytes(n(s, "read_bytes")).c_str());
  std::printf("writes       %llu (%s)\n", static_cast<unsigned long long>(n(s, "writes")),
              human_bytes(n(s, "write_bytes")).c_str());
  std::printf("map cache    %llu of %llu pages, hit ratio %.2f\n",
              static_cast<unsigned long long>(n(s, "map_cache_pages")),
              static_cast<unsigned long long>(n(s, "map_cache_max_pages")),
              s.at("map_cache_hit_ratio").to_number<double>());
  std::printf("store        %s referenced, %s physical, dedup ratio %.2f (whole node)\n",
              human_bytes(n(st, "referenced_bytes")).c_str(),
              human_bytes(n(st, "physical_bytes")).c_str(),
              st.at("dedup_ratio").to_number<double>());
  return 0;
}

// USER:SECRET -> (user, secret); the secret may itself hold colons.
std::pair<std::string, std::string> user_secret(const std::string& text, const char* option) {
  auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw UsageError(std::string(option) + " takes USER:SECRET");
  }
  return {text.substr(0, colon), text.substr(colon + 1)};
}

int Cli::access() {
  const std::string& name = word(2, "volume name");
  expect_words(3);
  check_name(name);
  json::object body;
  if (args_.opts.contains("--clear")) {
    body["clear"] = true;
  }
  if (args_.opts.contains("--allow")) {
    json::array initiators;
    std::string list = args_.opts.at("--allow");
    for (size_t start = 0; start <= list.size();) {
      size_t comma = list.find(',', start);
      std::string one =
          list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!one.empty()) {
        initiators.emplace_back(one);
      }
      if (comma == std::string::npos) {
        break;
      }
      start = comma + 1;
    }
    body["initiators"] = std::move(initiators);
  }
  if (args_.opts.contains("--chap")) {
    auto [user, secret] = user_secret(args_.opts.at("--chap"), "--chap");
    body["chap_user"] = user;
    body["chap_secret"] = secret;
  }
  if (args_.opts.contains("--mutual-chap")) {
    auto [user, secret] = user_secret(args_.opts.at("--mutual-chap"), "--mutual-chap");
    body["mutual_user"] = user;
    body["mutual_secret"] = secret;
  }
  json::value v = body.empty()
                      ? call("GET", "/v1/volumes/" + name + "/access")
                      : call("POST", "/v1/volumes/" + name + "/access", json::serialize(body));
  if (json_) {
    print_json(v);
    return 0;
  }
  const json::object& o = v.as_object();
  std::string initiators;
  for (const json::value& i : o.at("initiators").as_array()) {
    initiators += (initiators.empty() ? "" : ", ") + std::string(i.get_string());
  }
  std::printf("initiators   %s\n", initiators.empty() ? "any" : initiators.c_str());
  std::printf("chap         %s\n",
              o.at("chap").get_bool()
                  ? ("user " + std::string(o.at("chap_user").get_string())).c_str()
                  : "off");
  std::printf("mutual chap  %s\n",
              o.at("mutual_chap").get_bool()
                  ? ("user " + std::string(o.at("mutual_user").get_string())).c_str()
                  : "off");
  return 0;
}

int Cli::resize() {
  const std::string& name = word(2, "volume name");
  uint64_t size = size_arg(word(3, "new size"));
  expect_words(4);
  check_name(name);
  json::object body;
  body["size"] = size;
  json::value v = call("POST", "/v1/volumes/" + name + "/resize", json::serialize(body));
  if (json_) {
    print_json(v);
  } else {
    std::printf("resized volume %s to %s\n", name.c_str(), human_bytes(size).c_str());
  }
  return 0;
}

int Cli::remove() {
  const std::string& name = word(2, "volume name");
  expect_words(3);
  check_name(name);
  json::value v = call("DELETE", "/v1/volumes/" + name);
  if (json_) {
    print_json(v);
  } else {
    std::printf("deleted volume %s\n", name.c_str());
  }
  return 0;
}

int Cli::stats() {
  json::value v = call("GET", "/v1/stats");
  if (json_) {
    print_json(v);
    return 0;
  }
  const json::object& st = v.as_object().at("store").as_object();
  auto n = [&](const char* key) { return st.at(key).to_number<uint64_t>(); };
  std::printf("volumes           %llu\n",
              static_cast<unsigned long long>(v.as_object().at("volumes").to_number<uint64_t>()));
  std::printf("chunks            %llu\n", static_cast<unsigned long long>(n("chunks")));
  std::printf("referenced        %s\n", human_bytes(n("referenced_bytes")).c_str());
  std::printf("physical          %s\n", human_bytes(n("physical_bytes")).c_str());
  std::printf("capacity          %s\n", human_bytes(n("capacity_bytes")).c_str());
  std::printf("dedup ratio       %.2f\n", st.at("dedup_ratio").to_number<double>());
  std::printf("cache hit ratio   %.2f\n", st.at("cache_hit_ratio").to_number<double>());
  return 0;
}

int Cli::metrics() {
  HttpAnswer answer = admin_->request("GET", "/metrics", "");
  if (answer.status != 200) {
    throw CliError("cairnd answered HTTP " + std::to_string(answer.status) + " for /metrics");
  }
  std::fwrite(answer.body.data(), 1, answer.body.size(), stdout);
  return 0;
}

// import SRC VOLUME / export VOLUME DST.
int Cli::transfer(bool import) {
  const std::string& volume = word(import ? 2 : 1, "volume name");
  const std::string& other = word(import ? 1 : 2, import ? "source" : "destination");
  check_name(volume);
  bool quiet = json_ || args_.opts.contains("--quiet");
  std::unique_ptr<Endpoint> src;
  std::unique_ptr<Endpoint> dst;
  if (import) {
    src = is_nbd_uri(other) ? open_nbd_uri(other, false) : open_file_source(other);
    dst = open_nbd_tcp(nbd_host_, nbd_port_, volume, true);
  } else {
    src = open_nbd_tcp(nbd_host_, nbd_port_, volume, false);
    dst = is_nbd_uri(other) ? open_nbd_uri(other, true)
                            : open_file_destination(other, src->size_bytes());
  }
  Progress progress(import ? "importing" : "exporting", src->size_bytes(), !quiet);
  CopyStats s = copy(*src, *dst, progress);
  if (json_) {
    json::object o;
    o["source"] = src->name();
    o["destination"] = dst->name();
    o["total_bytes"] = s.total_bytes;
    o["data_bytes"] = s.data_bytes;
    o["zero_bytes"] = s.zero_bytes;
    o["seconds"] = s.seconds;
    print_json(o);
    return 0;
  }
  double rate = s.seconds > 0 ? static_cast<double>(s.total_bytes) / s.seconds : 0;
  std::printf("%s %s from %s to %s in %.1f s (%s/s): %s data, %s zero or holes skipped\n",
              import ? "imported" : "exported", human_bytes(s.total_bytes).c_str(),
              src->name().c_str(), dst->name().c_str(), s.seconds,
              human_bytes(static_cast<uint64_t>(rate)).c_str(), human_bytes(s.data_bytes).c_str(),
              human_bytes(s.zero_bytes).c_str());
  return 0;
}

}  // namespace
}  // namespace cairn::cli

int main(int argc, char** argv) {
  using cairn::cli::CliError;
  using cairn::cli::UsageError;
  try {
    cairn::cli::Args args = cairn::cli::parse_args(argc, argv);
    if (args.opts.contains("--help") || args.words.empty()) {
      std::fputs(cairn::cli::kUsage,
                 args.words.empty() && !args.opts.contains("--help") ? stderr : stdout);
      return args.opts.contains("--help") ? 0 : 2;
    }
    return cairn::cli::Cli(std::move(args)).run();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "cairn: %s\n(see cairn --help)\n", e.what());
    return 2;
  } catch (const CliError& e) {
    std::fprintf(stderr, "cairn: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cairn: unexpected error: %s\n", e.what());
    return 1;
  }
}
