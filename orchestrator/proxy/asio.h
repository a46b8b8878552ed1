// Boost.Asio for the proxy, with the one include Boost 1.74 forgets, and the socket type used for
// every stream (TCP and unix sockets alike).
#pragma once

// Boost 1.74 turns co_await on under clang only with libc++'s <experimental/coroutine>; clang with
// libstdc++ has C++20's <coroutine>, which Boost accepts from GCC (the fuzz build uses clang).
#if defined(__clang__) && !defined(BOOST_ASIO_HAS_CO_AWAIT) && defined(__cpp_impl_coroutine)
#if __has_include(<coroutine>)
#define BOOST_ASIO_HAS_CO_AWAIT 1
#endif
#endif

// clang-format off
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including <utility>
#include <boost/asio.hpp>
// clang-format on

namespace testpool::proxy {

namespace asio = boost::asio;
using Socket = asio::generic::stream_protocol::socket;

}  // namespace testpool::proxy
