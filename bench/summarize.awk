# SPDX-License-Identifier: BSD-3-Clause OR GPL-2.0-only
#
# summarize.awk - medians, ratios, table, JSON and plot data for bench/run.
#
# Input lines: KIND BTL REP BYTES T_USEC MBPS
#   KIND "pp" (BTL tcp|ninja) or "floor" (BTL floor).
# Variables: json, dat (output files), reps, bind, tool, ninja_status,
#   ninja_so, stamp, host, cores, ompi, rev, load.
# Latency ratios (ninja/tcp, lower is better) are given for 0 B - 1 KiB,
# bandwidth ratios (ninja/tcp, higher is better) for 1 KiB and up.

function sortn(a, n,    i, j, v) {
	for (i = 2; i <= n; i++) {
		v = a[i]
		for (j = i - 1; j >= 1 && a[j] > v; j--)
			a[j + 1] = a[j]
		a[j + 1] = v
	}
}

function median(list,    a, n) {
	if (list == "")
		return ""
	n = split(list, a, " ")
	sortn(a, n)
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function jarr(list,    a, n, i, s) {
	n = split(list, a, " ")
	s = "["
	for (i = 1; i <= n; i++)
		s = s (i > 1 ? "," : "") a[i]
	return s "]"
}

function num(v, fmt) { return v == "" ? "null" : sprintf(fmt, v) }
function cell(v, fmt) { return v == "" ? "-" : sprintf(fmt, v) }
function nan(v) { return v == "" ? "NaN" : v }

function label(b) {
	if (b >= 1048576 && b % 1048576 == 0) return (b / 1048576) "M"
	if (b >= 1024 && b % 1024 == 0) return (b / 1024) "K"
	return b
}

{
	key = $2 SUBSEP $4
	t[key] = t[key] (t[key] == "" ? "" : " ") $5
	bw[key] = bw[key] (bw[key] == "" ? "" : " ") $6
	if (!($4 in seen)) {
		seen[$4] = 1
		if ($1 == "pp")
			sizes[++nsizes] = $4 + 0
	}
	if ($1 == "floor")
		isfloor[$4] = 1
}

END {
	sortn(sizes, nsizes)
	have_ninja = ninja_status == "ok"
	printf "\nOpen MPI %s, %s\n", (ompi == "" ? "unknown" : ompi), tool
	printf "%-10s | %-38s | %-38s\n", "", \
	       "half round trip t [usec] (median)", "bandwidth [MB/s = 10^6 B/s] (median)"
	printf "%10s | %8s %8s %8s %10s | %8s %8s %8s %10s\n", "bytes", \
	       "tcp", "ninja", "floor", "ninja/tcp", "tcp", "ninja", "floor", "ninja/tcp"
	print "-----------+----------------------------------------+---------------------------------------"
	printf "{\"stamp\":\"%s\",\"host\":\"%s\",\"cores\":%d,\"openmpi\":\"%s\",\"git\":\"%s\",", \
	       stamp, host, cores, ompi, rev > json
	printf "\"tool\":\"%s\",\"reps\":%d,\"bind\":\"%s\",\"ninja\":\"%s\",\"ninja_status\":\"%s\",", \
	       tool, reps, bind, ninja_so, ninja_status > json
	printf "\"loadavg_start_end\":\"%s\",", load > json
	printf "\"statistic\":\"median\",\"t_unit\":\"usec, half round trip\",\"bw_unit\":\"MB/s, 10^6 bytes\"," > json
	printf "\"results\":[" > json
	nlat = 0; nbw = 0
	for (i = 1; i <= nsizes; i++) {
		b = sizes[i]
		kt = "tcp" SUBSEP b; kn = "ninja" SUBSEP b; kf = "floor" SUBSEP b
		tt = median(t[kt]); tn = median(t[kn]); tf = median(t[kf])
		bt = median(bw[kt]); bn = median(bw[kn]); bf = median(bw[kf])
		lr = (b <= 1024 && tn != "" && tt > 0) ? tn / tt : ""
		br = (b >= 1024 && bn != "" && bt > 0) ? bn / bt : ""
		printf "%10d | %8s %8s %8s %10s | %8s %8s %8s %10s\n", b, \
		       cell(tt, "%.2f"), (have_ninja ? cell(tn, "%.2f") : "n/a"), cell(tf, "%.2f"), \
		       (b <= 1024 ? (have_ninja ? cell(lr, "%.3f") : "n/a") : ""), \
		       cell(bt, "%.1f"), (have_ninja ? cell(bn, "%.1f") : "n/a"), cell(bf, "%.1f"), \
		       (b >= 1024 ? (have_ninja ? cell(br, "%.3f") : "n/a") : "")
		printf "%s{\"bytes\":%d,\"tcp\":{\"t_usec\":%s,\"mbps\":%s,\"t_samples\":%s,\"mbps_samples\":%s}", \
		       (i > 1 ? "," : ""), b, num(tt, "%.3f"), num(bt, "%.3f"), jarr(t[kt]), jarr(bw[kt]) > json
		if (tn != "")
			printf ",\"ninja\":{\"t_usec\":%.3f,\"mbps\":%.3f,\"t_samples\":%s,\"mbps_samples\":%s}", \
			       tn, bn, jarr(t[kn]), jarr(bw[kn]) > json
		else
			printf ",\"ninja\":null" > json
		if (tf != "")
			printf ",\"floor\":{\"t_usec\":%.3f,\"mbps\":%.3f,\"t_samples\":%s,\"mbps_samples\":%s}", \
			       tf, bf, jarr(t[kf]), jarr(bw[kf]) > json
		printf ",\"lat_ratio\":%s,\"bw_ratio\":%s}", num(lr, "%.4f"), num(br, "%.4f") > json
		if (b <= 1024)
			lat[++nlat] = sprintf("%d %s %s %s %s %s", b, nan(tt), nan(tn), nan(tf), nan(lr), label(b))
		if (b >= 1024)
			bwl[++nbw] = sprintf("%d %s %s %s %s %s", b, nan(bt), nan(bn), nan(bf), nan(br), label(b))
	}
	printf "]}\n" > json
	close(json)

	# Floor comparisons (target: ninja latency within 1.2x of the floor).
	print ""
	nf = 0
	for (b in isfloor)
		fl[++nf] = b + 0
	sortn(fl, nf)
	for (k = 1; k <= nf; k++) {
		b = fl[k]
		tf = median(t["floor" SUBSEP b]); bf = median(bw["floor" SUBSEP b])
		tt = median(t["tcp" SUBSEP b]); tn = median(t["ninja" SUBSEP b])
		bt = median(bw["tcp" SUBSEP b]); bn = median(bw["ninja" SUBSEP b])
		if (b + 0 <= 1024)
			printf "floor %s B: t %.2f usec; tcp/floor %s, ninja/floor %s (target <= 1.2)\n", b, tf, \
			       ((tt != "" && tf > 0) ? sprintf("%.2f", tt / tf) : "-"), \
			       ((tn != "" && tf > 0) ? sprintf("%.2f", tn / tf) : "n/a")
		else
			printf "floor %s B: %.1f MB/s; tcp/floor %s, ninja/floor %s\n", b, bf, \
			       ((bt != "" && bf > 0) ? sprintf("%.2f", bt / bf) : "-"), \
			       ((bn != "" && bf > 0) ? sprintf("%.2f", bn / bf) : "n/a")
	}
	if (!have_ninja)
		print "btl/ninja: " ninja_status

	# Plot data: block 0 latency rows, block 1 bandwidth rows.
	print "# bytes tcp ninja floor ratio label" > dat
	for (i = 1; i <= nlat; i++)
		print lat[i] > dat
	print "\n" > dat
	for (i = 1; i <= nbw; i++)
		print bwl[i] > dat
	close(dat)
}
