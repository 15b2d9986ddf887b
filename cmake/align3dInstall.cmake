# `cmake --install` of the inspector as a package (README "C++ inspector"): the libraries
# align3d::geometry, align3d::core, align3d::inspector and align3d::align3d-inspect, the public
# headers (cpp/include/align3d, cpp/geometry/include/align3d; cpp/src stays private) and
# lib/cmake/align3d/align3dConfig.cmake + version file for find_package(align3d CONFIG).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ALIGN3D_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/align3d")
set_target_properties(align3d_geometry PROPERTIES EXPORT_NAME geometry)
set(_align3d_targets align3d_geometry)
if(TARGET align3d_core)
  set_target_properties(align3d_core PROPERTIES EXPORT_NAME core)
  list(APPEND _align3d_targets align3d_core)
endif()
if(TARGET align3d_inspector)
  set_target_properties(align3d_inspector PROPERTIES EXPORT_NAME inspector)
  list(APPEND _align3d_targets align3d_inspector align3d-inspect)
endif()
# The optional backends' SDK targets are link-only dependencies of the static align3d_inspector.
foreach(sdk align3d_onnxruntime align3d_tensorrt)
  if(TARGET ${sdk})
    list(APPEND _align3d_targets ${sdk})
  endif()
endforeach()

install(TARGETS ${_align3d_targets} EXPORT align3dTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})  # include dirs: the targets' $<INSTALL_INTERFACE:include>
install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/cpp/include/align3d ${ALIGN3D_GEOMETRY_DIR}/include/align3d
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.hpp")
install(EXPORT align3dTargets NAMESPACE align3d:: DESTINATION ${ALIGN3D_CMAKE_DIR})

set(ALIGN3D_PACKAGE_OPENVINO OFF)
set(ALIGN3D_PACKAGE_ONNXRUNTIME OFF)
set(ALIGN3D_PACKAGE_TENSORRT OFF)
if(TARGET align3d_inspector AND ALIGN3D_WITH_OPENVINO)
  set(ALIGN3D_PACKAGE_OPENVINO ON)
endif()
if(TARGET align3d_onnxruntime)
  set(ALIGN3D_PACKAGE_ONNXRUNTIME ON)
endif()
if(TARGET align3d_tensorrt)
  set(ALIGN3D_PACKAGE_TENSORRT ON)
endif()
set(ALIGN3D_PACKAGE_OPENVINO_DIR "${OpenVINO_DIR}")
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/align3dConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/align3dConfig.cmake
                              INSTALL_DESTINATION ${ALIGN3D_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/align3dConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/align3dConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/align3dConfigVersion.cmake
        DESTINATION ${ALIGN3D_CMAKE_DIR})
