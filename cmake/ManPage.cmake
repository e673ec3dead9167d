# SPDX-License-Identifier: Apache-2.0
# Writes a man page from a template (configured already) and the built binary's --help, so that
# the page lists the options the binary has:
#   cmake -DBIN=mcpwarden -DIN=x.1.in -DOUT=x.1 -DCOMMAND=agent -DRECURSE=ON -P ManPage.cmake
# `BIN [COMMAND] --help` replaces %%HELP%% in the template as preformatted text; with RECURSE,
# every subcommand that help lists (CLI11's SUBCOMMANDS section), and theirs, follows in a
# subsection of its own, so that a new command appears without editing this build.
file(READ ${IN} _page)
set(_help "")

function(_help_of words out_text out_subcommands)
  execute_process(COMMAND ${BIN} ${words} --help OUTPUT_VARIABLE _out ERROR_VARIABLE _err
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "ManPage.cmake: '${BIN} ${words} --help' failed (${_rc}): ${_err}")
  endif()
  set(_subs "")
  string(FIND "${_out}" "\nSUBCOMMANDS:\n" _at)
  if(_at GREATER -1)
    string(SUBSTRING "${_out}" ${_at} -1 _tail)
    string(REGEX MATCHALL "\n  [a-z][a-z0-9-]*" _lines "${_tail}")
    foreach(_l IN LISTS _lines)
      string(STRIP "${_l}" _l)
      list(APPEND _subs ${_l})
    endforeach()
  endif()
  set(${out_text} "${_out}" PARENT_SCOPE)
  set(${out_subcommands} "${_subs}" PARENT_SCOPE)
endfunction()

function(_append words)
  _help_of("${words}" _out _subs)
  # roff: a backslash is \e; a line starting with . or ' would be a request.
  string(REPLACE "\\" "\\e" _out "${_out}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" _out "${_out}")
  string(STRIP "${_out}" _out)
  if(RECURSE)
    list(JOIN words " " _title)
    string(STRIP "mcpwarden ${_title}" _title)
    string(APPEND _help ".SS \"${_title}\"\n")
  endif()
  string(APPEND _help ".nf\n${_out}\n.fi\n")
  set(_help "${_help}" PARENT_SCOPE)
  if(RECURSE)
    foreach(_s IN LISTS _subs)
      set(_sub ${words})
      list(APPEND _sub ${_s})
      _append("${_sub}")
    endforeach()
    set(_help "${_help}" PARENT_SCOPE)
  endif()
endfunction()

separate_arguments(_words UNIX_COMMAND "${COMMAND}")
_append("${_words}")
string(REPLACE "%%HELP%%" "${_help}" _page "${_page}")
file(WRITE ${OUT}.tmp "${_page}")
file(RENAME ${OUT}.tmp ${OUT})
