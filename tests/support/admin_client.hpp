// Talking to a live mesobd's ports from tests: the two gateways the tests start it with
// (an admin one and a payments one), client options for them, one admin command, and a
// cell of an admin answer.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "wire/client.hpp"

namespace mesob::test {

inline const std::string ops_hex = "00112233445566778899aabbccddeeff";
inline const std::string pay_hex = "ffeeddccbbaa99887766554433221100";

inline wire::client::options options(uint16_t port, const std::string& gateway, const std::string& hex) {
  wire::client::options o;
  o.port = port;
  o.gateway = gateway;
  EXPECT_TRUE(wire::from_hex(hex, &o.secret));
  return o;
}

// A session of gateway "ops" on a mesobd's admin port; nullptr (and a test failure
// naming why) if it cannot be had.
inline std::unique_ptr<wire::client> connect_ops(uint16_t admin_port) {
  std::string err;
  auto c = wire::client::connect(options(admin_port, "ops", ops_hex), &err);
  EXPECT_TRUE(c) << err;
  return c;
}

// mesobd flags for gateway "ops" (admin) and "pay" (payments).
inline std::vector<std::string> two_gateways() {
  return {"--gateway", "ops:admin:" + ops_hex, "--gateway", "pay:payments:" + pay_hex};
}

// The value of `column` in the first row of the section titled `title`.
inline std::string cell(const wire::admin_response_msg& m, const std::string& title, const std::string& column) {
  for (const auto& s : m.sections) {
    if (s.title != title || s.rows.empty()) continue;
    for (size_t i = 0; i < s.columns.size(); ++i)
      if (s.columns[i].name == column) return s.rows[0][i];
  }
  return "<no " + title + "." + column + ">";
}

inline wire::admin_response_msg admin(wire::client& c, const std::string& command, std::vector<std::string> args = {}) {
  auto o = c.admin({command, std::move(args)});
  EXPECT_TRUE(o.ok) << command << ": " << o.failure << o.error.message;
  return o.response;
}

}  // namespace mesob::test
