/* SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only */
/*
 * vmm_events.h - ninja-migrate's event stream (--events FILE|-): one JSON
 * object per line (json-c), written and flushed as it happens: "start",
 * "phase-start", "phase-end", "progress", "end".  Format:
 * docs/vmm-bridge.md, "Events".  Thread-safe.
 */
#ifndef NINJA_VMM_EVENTS_H
#define NINJA_VMM_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

/* Open path (truncated) or, with fd >= 0, that descriptor.  -1 with err. */
int vmm_events_open(const char *path, int fd, char *err, size_t errlen);
/* A new event object {"event": NAME, "t_ms": T} to fill and emit. */
json_object *vmm_event_new(const char *name, double t_ms);
/* A number written with that many decimals (json-c keeps the text). */
json_object *vmm_json_num(double v, int decimals);
/* Write it as one line and flush; consumes o.  No-op when not open. */
void vmm_events_emit(json_object *o);
void vmm_events_close(void);

#endif /* NINJA_VMM_EVENTS_H */
