# find_package(testpoolClient): the imported targets testpool::client and testpool::client_gtest.
include(${CMAKE_CURRENT_LIST_DIR}/testpoolClientDependencies.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/testpoolClientTargets.cmake)
