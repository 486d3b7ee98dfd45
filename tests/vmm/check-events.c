// SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
/*
 * check-events.c - checks of ninja-migrate's machine-readable outputs for
 * tests/vmm/run-tests (json-c, strict):
 *
 *   check-events events EVENTS-FILE REPORT-FILE
 *       every line is one JSON object with "event" and "t_ms"; "start"
 *       first, "end" last with the report's result, exit code and total;
 *       per VM, every phase with a time in the report has one
 *       phase-start and one phase-end, the end's "ms" is the report's
 *       time, and the phases start in the order of the phase table
 *       ("total" excepted: it spans them); progress samples carry numbers.
 *   check-events status STATUS-JSON PID PHASE
 *       "ninja-migrate status --json" during a move: running, held by PID,
 *       every VM in PHASE with RAM numbers.
 *
 * Prints what is wrong and exits 1; prints a summary and exits 0.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

static const char *const phases[] = {
	"drain", "unplug", "start", "storage", "ram", "switch", "plug",
	"link-up", "reconnect", "total",
};
#define NPH	(int)(sizeof(phases) / sizeof(phases[0]))
#define MAXVM	64
#define MAXEV	100000

static int bad;

#define EXPECT(c, ...) do { if (!(c)) { fprintf(stderr, "check-events: " __VA_ARGS__); fputc('\n', stderr); bad++; } } while (0)

static json_object *parse_strict(const char *s, size_t n)
{
	json_tokener *tok = json_tokener_new_ex(32);
	json_object *o;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)n);
	if (json_tokener_get_error(tok) != json_tokener_success ||
	    (size_t)json_tokener_get_parse_end(tok) != n) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

static const char *str(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static bool num(json_object *o, const char *k, double *d)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !(json_object_is_type(v, json_type_double) ||
	      json_object_is_type(v, json_type_int)))
		return false;
	*d = json_object_get_double(v);
	return true;
}

static int phase_idx(const char *p)
{
	int i;

	for (i = 0; p && i < NPH; i++)
		if (!strcmp(p, phases[i]))
			return i;
	return -1;
}

struct vmst {
	const char *name;
	int nstart[NPH], nend[NPH];
	double start_t[NPH], end_ms[NPH];
	int order[NPH * 2], norder;
	int nprogress;
};

static struct vmst *vm_of(struct vmst *v, int *n, const char *name)
{
	int i;

	for (i = 0; i < *n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	if (*n == MAXVM)
		return NULL;
	memset(&v[*n], 0, sizeof(v[*n]));
	v[*n].name = name;
	return &v[(*n)++];
}

static int check_events(const char *evpath, const char *reppath)
{
	static json_object *ev[MAXEV];
	struct vmst vms[MAXVM];
	json_object *rep = json_object_from_file(reppath), *rvms, *o;
	FILE *f = fopen(evpath, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int n = 0, nv = 0, i, k, nprog = 0;
	double d;

	if (!f || !rep) {
		fprintf(stderr, "check-events: cannot read %s or %s\n", evpath, reppath);
		return 1;
	}
	while ((len = getline(&line, &cap, f)) > 0 && n < MAXEV) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		o = parse_strict(line, (size_t)len);
		EXPECT(o && json_object_is_type(o, json_type_object),
		       "line %d is not one JSON object: %.200s", n + 1, line);
		if (!o)
			continue;
		EXPECT(str(o, "event") && num(o, "t_ms", &d),
		       "line %d has no event/t_ms: %.200s", n + 1, line);
		ev[n++] = o;
	}
	free(line);
	fclose(f);
	EXPECT(n >= 2, "only %d events", n);
	if (n < 2)
		return 1;
	EXPECT(!strcmp(str(ev[0], "event") ?: "", "start"), "first event is not start");
	EXPECT(!strcmp(str(ev[n - 1], "event") ?: "", "end"), "last event is not end");
	EXPECT(!strcmp(str(ev[n - 1], "result") ?: "?", str(rep, "result") ?: "!"),
	       "end result %s, report %s", str(ev[n - 1], "result"), str(rep, "result"));
	{
		double a = -1, b = -2;
		json_object *ph;

		num(ev[n - 1], "exit_code", &a);
		num(rep, "exit_code", &b);
		EXPECT(a == b, "end exit_code %g, report %g", a, b);
		a = -1, b = -2;
		num(ev[n - 1], "total_ms", &a);
		if (json_object_object_get_ex(rep, "phases_ms", &ph))
			num(ph, "total", &b);
		EXPECT(a >= 0 && a - b < 0.06 && b - a < 0.06,
		       "end total_ms %.1f, report total %.1f", a, b);
	}
	for (i = 1; i < n - 1; i++) {
		const char *e = str(ev[i], "event"), *vn = str(ev[i], "vm");
		struct vmst *v;
		int p;

		EXPECT(e && vn, "event %d: no vm", i + 1);
		if (!e || !vn || !(v = vm_of(vms, &nv, vn)))
			continue;
		if (!strcmp(e, "progress")) {
			double a, b;

			EXPECT(num(ev[i], "ram_total", &a) && num(ev[i], "ram_remaining", &b) &&
			       str(ev[i], "phase"), "progress event %d lacks numbers", i + 1);
			v->nprogress++;
			nprog++;
			continue;
		}
		p = phase_idx(str(ev[i], "phase"));
		EXPECT(p >= 0, "event %d: unknown phase", i + 1);
		if (p < 0)
			continue;
		if (!strcmp(e, "phase-start")) {
			v->nstart[p]++;
			num(ev[i], "t_ms", &v->start_t[p]);
			if (p != NPH - 1)
				v->order[v->norder++] = p;
		} else if (!strcmp(e, "phase-end")) {
			EXPECT(v->nstart[p] == 1, "%s %s: end before start", vn, phases[p]);
			v->nend[p]++;
			if (!num(ev[i], "ms", &v->end_ms[p]))
				v->end_ms[p] = -1;
		} else {
			EXPECT(0, "event %d: unknown event %s", i + 1, e);
		}
	}
	EXPECT(json_object_object_get_ex(rep, "vms", &rvms), "report has no vms");
	for (i = 0; rvms && i < (int)json_object_array_length(rvms); i++) {
		json_object *rv = json_object_array_get_idx(rvms, i), *pm;
		const char *name = str(rv, "name");
		struct vmst *v = vm_of(vms, &nv, name ?: "?");

		if (!v || !json_object_object_get_ex(rv, "phases_ms", &pm))
			continue;
		for (k = 0; k < NPH; k++) {
			double want;

			if (!num(pm, phases[k], &want))
				continue;	/* null: not timed */
			EXPECT(v->nstart[k] == 1 && v->nend[k] == 1,
			       "%s %s: %d start(s), %d end(s), report %.1f ms",
			       name, phases[k], v->nstart[k], v->nend[k], want);
			EXPECT(v->end_ms[k] - want < 0.06 && want - v->end_ms[k] < 0.06,
			       "%s %s: event %.1f ms, report %.1f ms", name,
			       phases[k], v->end_ms[k], want);
		}
		/* Phase-table order by start time (stable: emission order). */
		for (k = 0; k < v->norder; k++) {
			int p = v->order[k], j;

			for (j = k + 1; j < v->norder; j++) {
				int q = v->order[j];

				EXPECT(q > p || v->start_t[q] < v->start_t[p],
				       "%s: %s (at %.1f ms) after %s (at %.1f ms) is out of the phase order",
				       name, phases[q], v->start_t[q], phases[p], v->start_t[p]);
			}
		}
	}
	printf("check-events: %d events, %d VM(s), %d progress samples, %d problem(s)\n",
	       n, nv, nprog, bad);
	for (i = 0; i < n; i++)
		json_object_put(ev[i]);
	json_object_put(rep);
	return bad ? 1 : 0;
}

static int check_status(const char *path, long pid, const char *phase)
{
	json_object *s = json_object_from_file(path), *vms, *v, *r;
	double d = -1;
	size_t i;

	if (!s) {
		fprintf(stderr, "check-events: %s is not JSON\n", path);
		return 1;
	}
	EXPECT(json_object_object_get_ex(s, "running", &r) &&
	       json_object_get_boolean(r), "not running");
	EXPECT(num(s, "lock_holder", &d) && (long)d == pid, "lock_holder %.0f, want %ld", d, pid);
	EXPECT(num(s, "pid", &d) && (long)d == pid, "pid %.0f, want %ld", d, pid);
	EXPECT(num(s, "epoch", &d) && d >= 1, "no epoch");
	EXPECT(num(s, "elapsed_ms", &d) && d > 0, "no elapsed_ms");
	EXPECT(json_object_object_get_ex(s, "vms", &vms) &&
	       json_object_array_length(vms) > 0, "no vms");
	for (i = 0; vms && i < json_object_array_length(vms); i++) {
		v = json_object_array_get_idx(vms, i);
		EXPECT(!strcmp(str(v, "phase") ?: "", phase), "%s in phase %s, want %s",
		       str(v, "name"), str(v, "phase"), phase);
		EXPECT(num(v, "ram_total", &d) && d > 0, "%s: no ram_total", str(v, "name"));
	}
	json_object_put(s);
	printf("check-events: status ok\n");
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "events"))
		return check_events(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "status"))
		return check_status(argv[2], atol(argv[3]), argv[4]);
	fprintf(stderr, "usage: check-events events EVENTS REPORT | status FILE PID PHASE\n");
	return 2;
}
