"""The report's three charts with Qt Charts, built from a :class:`ReportResult`.

Each builder returns a fresh :class:`QChart`, so the window and the PDF export draw
the same chart without sharing one (a chart belongs to one scene).
:func:`chart_image` renders a chart without a window, for the PDF.
"""

from __future__ import annotations

from datetime import date

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSeries,
    QBarSet,
    QChart,
    QChartView,
    QDateTimeAxis,
    QLineSeries,
    QValueAxis,
)
from PySide6.QtCore import QDate, QDateTime, QMargins, QPointF, QRectF, QSize, Qt, QTime
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QGraphicsScene

from desktop.report_data import ReportResult, minutes

ARRIVALS = QColor("#3b6ea8")
SERVED = QColor("#43a047")
TARGET = QColor("#c62828")
SLA = QColor("#6a4c93")


def _chart(title: str) -> QChart:
    chart = QChart()
    chart.setTitle(title)
    font = QFont()
    font.setPointSize(10)
    font.setBold(True)
    chart.setTitleFont(font)
    chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
    chart.setMargins(QMargins(4, 4, 4, 4))
    chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
    chart.setBackgroundRoundness(4)
    return chart


def _value_axis(top: float, label_format: str = "%.0f") -> QValueAxis:
    axis = QValueAxis()
    axis.setRange(0, top)
    axis.setLabelFormat(label_format)
    axis.applyNiceNumbers()
    return axis


def arrivals_chart(result: ReportResult) -> QChart:
    """Tickets issued and served per local hour of day (averaged when the range is longer)."""
    days = result.request.days
    title = "Arrivals and served per hour"
    chart = _chart(title if days == 1 else f"{title} (average of {days} days)")
    arrivals, served = QBarSet("Arrivals"), QBarSet("Served")
    arrivals.setColor(ARRIVALS)
    served.setColor(SERVED)
    hours = [h for h in range(24) if result.arrivals_by_hour[h] or result.served_by_hour[h]]
    first, last = (min(hours), max(hours)) if hours else (8, 17)
    shown = range(first, last + 1)
    arrivals.append([result.arrivals_by_hour[h] for h in shown])
    served.append([result.served_by_hour[h] for h in shown])
    series = QBarSeries()
    series.append(arrivals)
    series.append(served)
    chart.addSeries(series)
    x = QBarCategoryAxis()
    x.append([f"{h:02d}" for h in shown])
    x.setTitleText("Hour of day")
    top = max([1.0, *result.arrivals_by_hour, *result.served_by_hour])
    y = _value_axis(top, "%.0f" if days == 1 else "%.1f")
    y.setTitleText("Tickets")
    chart.addAxis(x, Qt.AlignmentFlag.AlignBottom)
    chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
    series.attachAxis(x)
    series.attachAxis(y)
    return chart


def histogram_chart(result: ReportResult) -> QChart:
    """How long called tickets waited, in bins, with each SLA target as a red line."""
    histogram = result.histogram
    chart = _chart("Wait-time distribution")
    bars = QBarSet("Called tickets")
    bars.setColor(ARRIVALS)
    bars.append([float(n) for n in histogram.counts])
    series = QBarSeries()
    series.setBarWidth(0.9)
    series.append(bars)
    chart.addSeries(series)
    x = QBarCategoryAxis()
    x.append([histogram.label(i) for i in range(len(histogram.counts))])
    x.setTitleText("Wait (minutes, from)")
    small = QFont()
    small.setPointSize(7)
    x.setLabelsFont(small)
    top = max([1.0, *map(float, histogram.counts)])
    y = _value_axis(top * 1.1)
    y.setTitleText("Tickets")
    chart.addAxis(x, Qt.AlignmentFlag.AlignBottom)
    chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
    series.attachAxis(x)
    series.attachAxis(y)
    # Category i spans [i - 0.5, i + 0.5] on a hidden value axis laid over the bars.
    bins = len(histogram.counts)
    position = QValueAxis()
    position.setRange(-0.5, bins - 0.5)
    position.setVisible(False)
    chart.addAxis(position, Qt.AlignmentFlag.AlignBottom)
    for label, seconds in result.targets_shown():
        at = min(seconds / histogram.bin_s - 0.5, bins - 0.5)
        line = QLineSeries()
        line.setName(f"SLA target {label}: {minutes(seconds)}")
        pen = QPen(TARGET, 2.5, Qt.PenStyle.DashLine)
        line.setPen(pen)
        line.append([QPointF(at, 0), QPointF(at, y.max())])
        chart.addSeries(line)
        line.attachAxis(position)
        line.attachAxis(y)
    return chart


def sla_chart(result: ReportResult) -> QChart:
    """The share of called tickets within their service's target, per local day.

    Bars for up to a month; a line over a date axis beyond (days without an eligible
    call have no point).
    """
    chart = _chart("SLA attainment per day")
    values = result.sla_by_day
    y = QValueAxis()
    y.setRange(0, 100)
    y.setLabelFormat("%d %%")
    y.setTitleText("Called within target")
    chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
    if len(values) <= 31:
        bars = QBarSet("Called within target (%)")
        bars.setColor(SLA)
        bars.append([100.0 * (v or 0.0) for v in values.values()])
        series = QBarSeries()
        series.append(bars)
        chart.addSeries(series)
        categories = QBarCategoryAxis()
        categories.append([d.strftime("%d %b") for d in values])
        categories.setLabelsAngle(-45 if len(values) > 7 else 0)
        chart.addAxis(categories, Qt.AlignmentFlag.AlignBottom)
        series.attachAxis(categories)
        series.attachAxis(y)
    else:
        line = QLineSeries()
        line.setName("Called within target (%)")
        line.setPen(QPen(SLA, 2))
        for day, value in values.items():
            if value is not None:
                line.append(float(_noon(day).toMSecsSinceEpoch()), 100.0 * value)
        chart.addSeries(line)
        dates = QDateTimeAxis()
        dates.setFormat("dd MMM yy")
        dates.setTickCount(8)
        dates.setRange(_noon(min(values)).addSecs(-43200), _noon(max(values)).addSecs(43200))
        chart.addAxis(dates, Qt.AlignmentFlag.AlignBottom)
        line.attachAxis(dates)
        line.attachAxis(y)
    if not any(v is not None for v in values.values()):
        chart.setTitle("SLA attainment per day (no call of a service with a target)")
    return chart


def _noon(day: date) -> QDateTime:
    return QDateTime(QDate(day.year, day.month, day.day), QTime(12, 0))


def chart_view(chart: QChart) -> QChartView:
    view = QChartView(chart)
    view.setRenderHint(QPainter.RenderHint.Antialiasing)
    view.setMinimumSize(360, 240)
    return view


def chart_image(chart: QChart, size: QSize, scale: float = 2.0) -> QImage:
    """``chart`` drawn at ``size`` (logical pixels) into an image ``scale`` times as dense."""
    scene = QGraphicsScene()
    chart.resize(size.width(), size.height())
    scene.addItem(chart)
    scene.setSceneRect(QRectF(0, 0, size.width(), size.height()))
    image = QImage(
        int(size.width() * scale), int(size.height() * scale), QImage.Format.Format_ARGB32
    )
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    scene.render(painter, QRectF(0, 0, image.width(), image.height()), scene.sceneRect())
    painter.end()
    scene.removeItem(chart)
    return image
