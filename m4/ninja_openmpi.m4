# NINJA_CHECK_OPENMPI
# Find Open MPI's devel headers (mpicc --showme:incdirs by default, or
# --with-openmpi=DIR), the directory where the installed Open MPI loads its
# components (ompi_info --path pkglibdir), and check that the headers and the
# runtime are the same Open MPI version: an MCA component is only loadable
# into the exact release whose internal headers it was built against.
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
    save_CPPFLAGS="$CPPFLAGS"
    CPPFLAGS="$CPPFLAGS $OMPI_CPPFLAGS"
    AC_CHECK_HEADER([opal/mca/btl/btl.h], [],
        [AC_MSG_ERROR([Open MPI devel headers (opal/mca/btl/btl.h) not found in $OMPI_INCDIRS; install libopenmpi-dev])],
        [#include <opal_config.h>])
    AC_MSG_CHECKING([Open MPI version of the headers])
    AC_COMPUTE_INT([ompi_maj], [OPAL_MAJOR_VERSION], [#include <opal_config.h>], [ompi_maj=0])
    AC_COMPUTE_INT([ompi_min], [OPAL_MINOR_VERSION], [#include <opal_config.h>], [ompi_min=0])
    AC_COMPUTE_INT([ompi_rel], [OPAL_RELEASE_VERSION], [#include <opal_config.h>], [ompi_rel=0])
    OMPI_VERSION_FOUND="$ompi_maj.$ompi_min.$ompi_rel"
    AC_MSG_RESULT([$OMPI_VERSION_FOUND])
    AS_IF([test "$ompi_maj" != 4 || test "$ompi_min" != 1],
        [AC_MSG_ERROR([btl/ninja targets Open MPI 4.1 (MCA 2.1, BTL API 3.1); found $OMPI_VERSION_FOUND])])
    AC_CHECK_DECL([OPAL_ENABLE_FT_CR], [], [], [#include <opal_config.h>])
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
    AC_SUBST([ompicompdir])
    AC_SUBST([ompihelpdir])
])
