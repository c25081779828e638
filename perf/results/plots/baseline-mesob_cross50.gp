set terminal png size 1200,700
set output '/work/main/perf/results/plots/baseline-mesob_cross50-latency-over-time.png'
set title "mesob, closed loop: transfers, batch 8192, 100000 accounts, 2 shards, 50% cross-shard, 0% hot (16 per shard), amounts 1..1000" noenhanced
set xlabel 'seconds'
set ylabel 'request latency, us'
set y2label 'transfers/s'
set logscale y
set y2tics
set y2range [0:*]
set ytics nomirror
set grid
set key top left
set arrow from 1.000, graph 0 to 1.000, graph 1 nohead dt 2
set label 'warm-up ends' at 1.000, graph 0.04 offset 0.5, 0
plot '/work/main/perf/results/plots/baseline-mesob_cross50-timeline.dat' using 1:3 with lines title 'p50', '' using 1:4 with lines title 'p99', '' using 1:5 with lines title 'max', '' using 1:2 axes x1y2 with lines title 'transfers/s'
set output '/work/main/perf/results/plots/baseline-mesob_cross50-latency-distribution.png'
unset arrow
unset label
unset y2tics
unset y2label
set xlabel 'percentile'
set logscale x
set xtics ('0%%' 1, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)
plot '/work/main/perf/results/plots/baseline-mesob_cross50-distribution.dat' using 3:2 with lines title 'request latency'
