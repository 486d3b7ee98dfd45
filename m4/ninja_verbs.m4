# NINJA_CHECK_VERBS: optional libibverbs for the verbs rail.
AC_DEFUN([NINJA_CHECK_VERBS], [
    AC_ARG_WITH([verbs],
        [AS_HELP_STRING([--without-verbs], [build the TCP rail only])],
        [], [with_verbs=check])
    have_verbs=no
    VERBS_LIBS=""
    AS_IF([test "x$with_verbs" != xno], [
        AC_CHECK_HEADER([infiniband/verbs.h],
            [AC_CHECK_LIB([ibverbs], [ibv_get_device_list],
                [have_verbs=yes; VERBS_LIBS="-libverbs"])])
        AS_IF([test "x$with_verbs" = xyes && test "x$have_verbs" = xno],
            [AC_MSG_ERROR([--with-verbs given but libibverbs-dev was not found])])
    ])
    AS_IF([test "x$have_verbs" = xyes],
        [AC_DEFINE([NINJA_HAVE_VERBS], [1], [libibverbs is available])])
    AM_CONDITIONAL([HAVE_VERBS], [test "x$have_verbs" = xyes])
    AC_SUBST([VERBS_LIBS])
])
