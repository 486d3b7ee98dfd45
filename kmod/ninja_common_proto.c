// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/* Builds common/ninja_proto.c into ninja.ko (kbuild dislikes ../ objects). */
#include "../common/ninja_proto.c"
