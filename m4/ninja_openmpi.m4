# NINJA_CHECK_OPENMPI
# Find Open MPI's devel headers (mpicc --showme:incdirs by default, or
# --with-openmpi=DIR), the directory where the installed Open MPI loads its
# components (ompi_info --path pkglibdir), and check that the headers and the
# runtime are the same Open MPI version: an MCA component is only loadable
# into the exact release whose internal headers it was built against.
# Open MPI 4.1 (BTL API 3.1) and 5.0 (BTL API 3.3) are supported; the
# differences are in ompi-plugin/btl_ninja_compat.h.  Needs $PMIX_CFLAGS
# (Open MPI 5.0's internal headers include <pmix.h>).
#
# --with-openmpi-source=DIR: an unpacked source tree of the same release
# (Debian: apt-get source openmpi).  Debian 13's libopenmpi-dev lacks the
# headers of the threads framework's pthreads component, which
# opal_config.h names (MCA_threads_*_HEADER) and every internal header
# pulls in; configure copies just those headers (opal/mca/threads/pthreads/
# *.h) from DIR into the build tree, and only if the installed ones lack them.
AC_DEFUN([NINJA_OMPI_HEADERS_OK], [
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[#include <opal_config.h>
#include <opal/mca/btl/btl.h>]], [[]])], [$1], [$2])
])
AC_DEFUN([NINJA_CHECK_OPENMPI], [
    AC_ARG_WITH([openmpi],
        [AS_HELP_STRING([--with-openmpi=DIR],
            [Open MPI include directory (default: from mpicc --showme:incdirs)])],
        [], [with_openmpi=default])
    AC_ARG_WITH([ompi-component-dir],
        [AS_HELP_STRING([--with-ompi-component-dir=DIR],
            [where to install mca_btl_ninja.so (default: ompi_info --path pkglibdir)])],
        [ompicompdir="$withval"], [ompicompdir=""])
    AC_ARG_WITH([ompi-help-dir],
        [AS_HELP_STRING([--with-ompi-help-dir=DIR],
            [where to install help-mpi-btl-ninja.txt, the directory Open MPI's
             opal_show_help reads (default: ompi_info --path pkgdatadir)])],
        [ompihelpdir="$withval"], [ompihelpdir=""])
    AC_ARG_WITH([openmpi-source],
        [AS_HELP_STRING([--with-openmpi-source=DIR],
            [unpacked source of the same Open MPI release, for internal
             headers the devel package lacks (Debian 13: apt-get source openmpi)])],
        [], [with_openmpi_source=no])
    AC_PATH_PROG([MPICC], [mpicc], [no])
    AC_PATH_PROG([OMPI_INFO], [ompi_info], [no])
    AS_IF([test "x$with_openmpi" = xdefault], [
        AS_IF([test "x$MPICC" = xno],
            [AC_MSG_ERROR([mpicc not found: install libopenmpi-dev or use --with-openmpi=DIR])])
        OMPI_INCDIRS=`$MPICC --showme:incdirs`
    ], [
        OMPI_INCDIRS="$with_openmpi $with_openmpi/openmpi"
    ])
    OMPI_CPPFLAGS=""
    for d in $OMPI_INCDIRS; do OMPI_CPPFLAGS="$OMPI_CPPFLAGS -isystem $d"; done
    OMPI_CPPFLAGS="$OMPI_CPPFLAGS $PMIX_CFLAGS"
    save_CPPFLAGS="$CPPFLAGS"
    CPPFLAGS="$CPPFLAGS $OMPI_CPPFLAGS"
    AC_CHECK_HEADER([opal_config.h], [],
        [AC_MSG_ERROR([Open MPI devel headers (opal_config.h) not found in $OMPI_INCDIRS; install libopenmpi-dev])])
    AC_MSG_CHECKING([whether Open MPI's internal headers are complete])
    NINJA_OMPI_HEADERS_OK([ompi_hdr_ok=yes], [ompi_hdr_ok=no])
    AC_MSG_RESULT([$ompi_hdr_ok])
    AS_IF([test $ompi_hdr_ok = no && test "x$with_openmpi_source" != xno], [
        ompi_thr="$with_openmpi_source/opal/mca/threads/pthreads"
        AS_IF([test -f "$ompi_thr/threads_pthreads_mutex.h"], [],
            [AC_MSG_ERROR([--with-openmpi-source=$with_openmpi_source: no $ompi_thr/threads_pthreads_mutex.h (not an Open MPI 5 source tree)])])
        rm -rf ompi-extra-include
        AS_MKDIR_P([ompi-extra-include/opal/mca/threads/pthreads])
        cp "$ompi_thr"/*.h ompi-extra-include/opal/mca/threads/pthreads/ ||
            AC_MSG_ERROR([cannot copy $ompi_thr/*.h])
        OMPI_CPPFLAGS="$OMPI_CPPFLAGS -isystem `pwd`/ompi-extra-include"
        CPPFLAGS="$save_CPPFLAGS $OMPI_CPPFLAGS"
        AC_MSG_CHECKING([Open MPI's internal headers with the threads headers of $with_openmpi_source])
        NINJA_OMPI_HEADERS_OK([ompi_hdr_ok=yes], [ompi_hdr_ok=no])
        AC_MSG_RESULT([$ompi_hdr_ok])
    ])
    AS_IF([test $ompi_hdr_ok = no], [
        AS_IF([grep -q 'MCA_threads_mutex_base_include_HEADER' `for d in $OMPI_INCDIRS; do ls $d/opal_config.h 2>/dev/null; done` /dev/null &&
               test "x$with_openmpi_source" = xno],
            [AC_MSG_ERROR([Open MPI's devel headers in $OMPI_INCDIRS cannot be compiled (see config.log); Debian 13's libopenmpi-dev lacks opal/mca/threads/pthreads/*.h: unpack the source of the same release (apt-get source openmpi) and pass --with-openmpi-source=DIR])],
            [AC_MSG_ERROR([Open MPI's devel headers in $OMPI_INCDIRS cannot be compiled (see config.log); install libopenmpi-dev (and libpmix-dev)])])
    ])
    AC_MSG_CHECKING([Open MPI version of the headers])
    AC_COMPUTE_INT([ompi_maj], [OPAL_MAJOR_VERSION], [#include <opal_config.h>], [ompi_maj=0])
    AC_COMPUTE_INT([ompi_min], [OPAL_MINOR_VERSION], [#include <opal_config.h>], [ompi_min=0])
    AC_COMPUTE_INT([ompi_rel], [OPAL_RELEASE_VERSION], [#include <opal_config.h>], [ompi_rel=0])
    OMPI_VERSION_FOUND="$ompi_maj.$ompi_min.$ompi_rel"
    AC_MSG_RESULT([$OMPI_VERSION_FOUND])
    AS_CASE([$ompi_maj.$ompi_min],
        [4.1], [OMPI_SERIES=4.1],
        [5.0], [OMPI_SERIES=5.0],
        [AC_MSG_ERROR([btl/ninja supports Open MPI 4.1 (BTL API 3.1) and 5.0 (BTL API 3.3); the headers in $OMPI_INCDIRS are Open MPI $OMPI_VERSION_FOUND])])
    AS_IF([test "x$with_openmpi_source" != xno && test -f "$with_openmpi_source/VERSION"], [
        src_version=`sed -n 's/^major=//p; s/^minor=//p; s/^release=//p' "$with_openmpi_source/VERSION" | tr '\n' . | sed 's/\.$//'`
        AS_IF([test "x$src_version" != "x$OMPI_VERSION_FOUND"],
            [AC_MSG_ERROR([--with-openmpi-source=$with_openmpi_source is Open MPI $src_version, the headers are $OMPI_VERSION_FOUND: use the source of the installed release])])
    ])
    CPPFLAGS="$save_CPPFLAGS"
    AS_IF([test "x$OMPI_INFO" != xno], [
        AC_MSG_CHECKING([Open MPI runtime version])
        ompi_run_version=`$OMPI_INFO --version 2>/dev/null | sed -n 's/^Open MPI v//p' | head -n1`
        AC_MSG_RESULT([$ompi_run_version])
        AS_IF([test "x$ompi_run_version" != "x$OMPI_VERSION_FOUND"],
            [AC_MSG_ERROR([headers are Open MPI $OMPI_VERSION_FOUND but the installed runtime is $ompi_run_version: a component must be built against the exact release it is loaded into])])
        AS_IF([test -z "$ompicompdir"],
            [ompicompdir=`$OMPI_INFO --path pkglibdir 2>/dev/null | sed -n 's/^ *Pkglibdir: *//p'`])
        AS_IF([test -z "$ompihelpdir"],
            [ompihelpdir=`$OMPI_INFO --path pkgdatadir 2>/dev/null | sed -n 's/^ *Pkgdatadir: *//p'`])
    ])
    AS_IF([test -z "$ompicompdir"], [ompicompdir='${libdir}/openmpi'])
    AS_IF([test -z "$ompihelpdir"], [ompihelpdir='${datadir}/openmpi'])
    AC_MSG_CHECKING([where Open MPI loads components])
    AC_MSG_RESULT([$ompicompdir])
    AC_MSG_CHECKING([where Open MPI reads help files])
    AC_MSG_RESULT([$ompihelpdir])
    AS_IF([test -n "$MPICC" && test "x$MPICC" != xno],
        [OMPI_LIBDIRS=`$MPICC --showme:libdirs`], [OMPI_LIBDIRS=""])
    OMPI_LDFLAGS=""
    for d in $OMPI_LIBDIRS; do OMPI_LDFLAGS="$OMPI_LDFLAGS -L$d"; done
    AC_DEFINE_UNQUOTED([NINJA_OMPI_VERSION], ["$OMPI_VERSION_FOUND"],
        [Open MPI release the component was built against])
    AC_SUBST([OMPI_CPPFLAGS])
    AC_SUBST([OMPI_LDFLAGS])
    AC_SUBST([OMPI_VERSION_FOUND])
    AC_SUBST([OMPI_SERIES])
    AC_SUBST([ompicompdir])
    AC_SUBST([ompihelpdir])
])
