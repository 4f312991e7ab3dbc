// cairnd: one cairn node. Wires the layers together (BRIEF, "Layout"): the reactor pool, the
// local chunk and metadata stores, the volume manager, and the front ends.
//
//   cairnd [--config FILE] [--set section.name=value ...] [--demo-volume NAME:SIZE]
//
// Runs in the foreground like `nbdkit -f`; SIGINT/SIGTERM flush every volume and stop.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/asio.h"
#include "base/config.h"
#include "base/log.h"
#include "tools/node.h"

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: cairnd [--config FILE] [--set section.name=value]...\n"
               "              [--demo-volume NAME:SIZE]\n"
               "Settings are documented in docs/configuration.md.\n");
}

}  // namespace

int main(int argc, char** argv) {
  cairn::Config config;
  cairn::NodeOptions options;
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      auto next = [&]() -> const std::string& {
        if (i + 1 >= args.size()) {
          throw cairn::ConfigError(a + " needs a value");
        }
        return args[++i];
      };
      if (a == "--config") {
        config.load_file(next());
      } else if (a == "--set") {
        const std::string& kv = next();
        auto eq = kv.find('=');
        if (eq == std::string::npos) {
          throw cairn::ConfigError("--set expects section.name=value, not '" + kv + "'");
        }
        config.set(kv.substr(0, eq), kv.substr(eq + 1));
      } else if (a == "--demo-volume") {
        const std::string& spec = next();
        auto colon = spec.find(':');
        if (colon == std::string::npos) {
          throw cairn::ConfigError("--demo-volume expects NAME:SIZE, not '" + spec + "'");
        }
        options.demo_volume = spec.substr(0, colon);
        options.demo_size_bytes = cairn::parse_size(spec.substr(colon + 1));
      } else if (a == "-h" || a == "--help") {
        usage();
        return 0;
      } else {
        throw cairn::ConfigError("unknown argument '" + a + "'");
      }
    }
  } catch (const cairn::ConfigError& e) {
    std::fprintf(stderr, "cairnd: %s\n", e.what());
    usage();
    return 2;
  }
  cairn::log::Level level{};
  if (!cairn::log::parse_level(config.log_level, &level)) {
    std::fprintf(stderr, "cairnd: node.log_level must be debug, info, warn or error\n");
    return 2;
  }
  cairn::log::set_level(level);
  return cairn::run_node(config, options);
}
