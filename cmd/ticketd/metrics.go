package main

import (
	"context"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ticketd/ticketd/store"
)

// statsCollector exports a bridge's Stats struct (plain integer counters)
// as one Prometheus counter family labelled by outcome, read at each scrape:
// the bridges need not know Prometheus.
type statsCollector[T any] struct {
	desc  *prometheus.Desc
	stats func() T
}

func newStatsCollector[T any](name, help string, stats func() T) *statsCollector[T] {
	return &statsCollector[T]{desc: prometheus.NewDesc(name, help, []string{"outcome"}, nil), stats: stats}
}

func (c *statsCollector[T]) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *statsCollector[T]) Collect(ch chan<- prometheus.Metric) {
	v := reflect.ValueOf(c.stats())
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		var n float64
		switch {
		case f.CanInt():
			n = float64(f.Int())
		case f.CanUint():
			n = float64(f.Uint())
		default:
			continue
		}
		outcome := strings.ToLower(v.Type().Field(i).Name)
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, n, outcome)
	}
}

// queueCollector reports the delivery queue's depth on every scrape.
type queueCollector struct {
	st   *store.Store
	desc *prometheus.Desc
}

func newQueueCollector(st *store.Store) *queueCollector {
	return &queueCollector{st: st, desc: prometheus.NewDesc("ticketd_outbox_deliveries",
		"Notification deliveries in the queue by state (pending, waiting behind an earlier one of the same ticket, dead).", []string{"state"}, nil)}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range []store.DeliveryState{store.DeliveryPending, store.DeliveryWaiting, store.DeliveryDead} {
		if n, err := c.st.CountDeliveries(ctx, s); err == nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(s))
		}
	}
}
