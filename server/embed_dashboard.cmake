# Writes OUT, a C++ source that defines the dashboard's files
# (dashboard_assets.h) as raw string literals of HTML, JS and CSS, the files
# server/dashboard/ holds. Run at build time by server/CMakeLists.txt
# (cmake -DOUT=... -DHTML=... -DJS=... -DCSS=... -P embed_dashboard.cmake),
# again whenever one of them changes.
set(delimiter "tenancy_ui")
set(body "// Generated from server/dashboard/ by server/embed_dashboard.cmake: do not edit.\n")
string(APPEND body "#include \"dashboard_assets.h\"\n\nnamespace tenancy::internal {\n")
foreach(pair "kDashboardHtml=${HTML}" "kDashboardScript=${JS}" "kDashboardStyle=${CSS}")
  string(FIND "${pair}" "=" eq)
  string(SUBSTRING "${pair}" 0 ${eq} name)
  math(EXPR start "${eq} + 1")
  string(SUBSTRING "${pair}" ${start} -1 file)
  file(READ "${file}" content)
  string(FIND "${content}" ")${delimiter}\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${file} contains the raw string delimiter )${delimiter}\"")
  endif()
  string(APPEND body "\nextern const std::string_view ${name} = R\"${delimiter}(${content})${delimiter}\";\n")
endforeach()
string(APPEND body "\n}  // namespace tenancy::internal\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
