# CMake package for Ferrite's C ABI, as scripts/install-capi.sh lays it out:
#
#   PREFIX/include/ferrite.h
#   PREFIX/lib/libferrite.so, PREFIX/lib/libferrite.a
#   PREFIX/lib/libferrite_delegate.a               (the C ABI for Ferrite's delegates alone)
#   PREFIX/lib/libferrite_executorch.so          (when the ExecuTorch plugin was built)
#   PREFIX/lib/cmake/ferrite/ferrite-config.cmake (this file)
#
# Usage:
#   find_package(ferrite CONFIG REQUIRED)                # CMAKE_PREFIX_PATH=PREFIX
#   target_link_libraries(app PRIVATE ferrite::runtime)  # or ferrite::runtime_static
#
# Targets:
#   ferrite::runtime             the shared C ABI library (libferrite.so)
#   ferrite::runtime_static      the same, static (libferrite.a; brings its system libraries)
#   ferrite::delegate_static     the C ABI built without portable kernels (libferrite_delegate.a):
#                                it runs Ferrite's delegates and programs whose every operator
#                                Ferrite's partitioner delegates — about half the size; what the
#                                ExecuTorch plugin links
#   ferrite::executorch_backend  the FerriteBackend plugin for stock ExecuTorch, linked so that
#                                it registers itself (--no-as-needed); defined when installed

get_filename_component(_ferrite_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
include(CMakeFindDependencyMacro)
find_dependency(Threads)

if(NOT TARGET ferrite::runtime)
  add_library(ferrite::runtime SHARED IMPORTED)
  set_target_properties(ferrite::runtime PROPERTIES
    IMPORTED_LOCATION "${_ferrite_prefix}/lib/libferrite.so"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${_ferrite_prefix}/include")
endif()

if(NOT TARGET ferrite::runtime_static)
  add_library(ferrite::runtime_static STATIC IMPORTED)
  set_target_properties(ferrite::runtime_static PROPERTIES
    IMPORTED_LOCATION "${_ferrite_prefix}/lib/libferrite.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_ferrite_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()

if(NOT TARGET ferrite::delegate_static AND EXISTS "${_ferrite_prefix}/lib/libferrite_delegate.a")
  add_library(ferrite::delegate_static STATIC IMPORTED)
  set_target_properties(ferrite::delegate_static PROPERTIES
    IMPORTED_LOCATION "${_ferrite_prefix}/lib/libferrite_delegate.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_ferrite_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()

set(_ferrite_plugin "${_ferrite_prefix}/lib/libferrite_executorch.so")
if(EXISTS "${_ferrite_plugin}" AND NOT TARGET ferrite::executorch_backend)
  add_library(ferrite::executorch_backend SHARED IMPORTED)
  set_target_properties(ferrite::executorch_backend PROPERTIES
    IMPORTED_LOCATION "${_ferrite_plugin}"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_LINK_OPTIONS "LINKER:--push-state,--no-as-needed,${_ferrite_plugin},--pop-state")
endif()

set(ferrite_FOUND TRUE)
