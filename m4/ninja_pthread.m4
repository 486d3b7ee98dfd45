# AX_PTHREAD_SIMPLE: check that -pthread works (gcc/clang on Linux).
AC_DEFUN([AX_PTHREAD_SIMPLE], [
    PTHREAD_CFLAGS="-pthread"
    PTHREAD_LIBS="-pthread"
    save_CFLAGS="$CFLAGS"; CFLAGS="$CFLAGS $PTHREAD_CFLAGS"
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <pthread.h>]],
        [[pthread_t t; pthread_create(&t, 0, 0, 0);]])], [],
        [AC_MSG_ERROR([POSIX threads are required])])
    CFLAGS="$save_CFLAGS"
    AC_SUBST([PTHREAD_CFLAGS])
    AC_SUBST([PTHREAD_LIBS])
])
