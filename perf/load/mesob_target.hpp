// The Mesob target of mesob-load: a running mesobd reached over the binary protocol with
// the C++ client library (wire/async_client.hpp for the load, wire/client.hpp for set-up
// and verification).
#pragma once

#include <memory>
#include <string>

#include "perf/load/target.hpp"
#include "wire/client.hpp"

namespace mesob::load {

std::unique_ptr<target> make_mesob_target(const wire::client::options& o, std::string* error);

}  // namespace mesob::load
