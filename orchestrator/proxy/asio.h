// Boost.Asio for the proxy, with the one include Boost 1.74 forgets, and the socket type used for
// every stream (TCP and unix sockets alike).
#pragma once

// clang-format off
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including <utility>
#include <boost/asio.hpp>
// clang-format on

namespace testpool::proxy {

namespace asio = boost::asio;
using Socket = asio::generic::stream_protocol::socket;

}  // namespace testpool::proxy
