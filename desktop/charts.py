"""The report's three charts with Qt Charts, built from a :class:`ReportResult`.

Each builder returns a fresh :class:`QChart`, so the window and the PDF export draw
the same chart without sharing one (a chart belongs to one scene).
:func:`chart_image` renders a chart without a window, for the PDF.

A builder's chart has Qt Charts' light look (the PDF prints it on white).
:class:`ChartView` dresses its chart for the palette it is shown in (:func:`dress`),
and again whenever the palette changes: the console's dark theme
(``resources/themes/dark.qss``) gives the view a dark palette, and switching the
theme in the settings restyles every open window, this view included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache

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
from PySide6.QtCore import (
    QDate,
    QDateTime,
    QEvent,
    QMargins,
    QPointF,
    QRectF,
    QSize,
    Qt,
    QTime,
)
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QGraphicsScene, QWidget

from desktop.report_data import ReportResult, minutes

ARRIVALS = QColor("#3b6ea8")
SERVED = QColor("#43a047")
TARGET = QColor("#c62828")
SLA = QColor("#6a4c93")

# Each series' colour on a light and on a dark palette, by the role a builder gives it.
SERIES_COLOURS: dict[str, tuple[QColor, QColor]] = {
    "arrivals": (ARRIVALS, QColor("#5e9be0")),
    "served": (SERVED, QColor("#5cb860")),
    "target": (TARGET, QColor("#ff6e64")),
    "sla": (SLA, QColor("#a98bdc")),
}
_ROLE = "seriesColour"  # the dynamic property that holds a bar set's or a line's role


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
    _colour(arrivals, "arrivals")
    _colour(served, "served")
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
    _colour(bars, "arrivals")
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
        line.setPen(QPen(TARGET, 2.5, Qt.PenStyle.DashLine))
        _colour(line, "target")
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
        _colour(bars, "sla")
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
        _colour(line, "sla")
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


# -- following the theme ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChartLook:
    """The colours of a chart's frame and text, apart from its series."""

    background: QBrush
    background_pen: QPen
    title: QBrush
    legend_labels: QBrush
    axis_labels: QBrush
    axis_title: QBrush
    axis_line: QPen
    grid: QPen
    minor_grid: QPen
    bar_border: QPen
    dark: bool


def is_dark(palette: QPalette) -> bool:
    """Whether ``palette`` draws light text on a dark window (the dark theme does)."""
    window = palette.color(QPalette.ColorRole.Window).lightness()
    return window < palette.color(QPalette.ColorRole.WindowText).lightness()


@cache
def light_look() -> ChartLook:
    """Qt Charts' own light look, as a fresh chart has it (and as the charts always had)."""
    chart = QChart()
    axis = QValueAxis()
    chart.addAxis(axis, Qt.AlignmentFlag.AlignLeft)
    bars = QBarSet("")
    series = QBarSeries()
    series.append(bars)
    chart.addSeries(series)
    return ChartLook(
        background=QBrush(chart.backgroundBrush()),
        background_pen=QPen(chart.backgroundPen()),
        title=QBrush(chart.titleBrush()),
        legend_labels=QBrush(chart.legend().labelBrush()),
        axis_labels=QBrush(axis.labelsBrush()),
        axis_title=QBrush(axis.titleBrush()),
        axis_line=QPen(axis.linePen()),
        grid=QPen(axis.gridLinePen()),
        minor_grid=QPen(axis.minorGridLinePen()),
        bar_border=QPen(bars.pen()),
        dark=False,
    )


def dark_look(palette: QPalette) -> ChartLook:
    """A look made of the palette's window and text colours, for a dark theme."""
    window = palette.color(QPalette.ColorRole.Window)
    text = palette.color(QPalette.ColorRole.WindowText)
    card = _mix(window, text, 0.04)  # a shade above the window, like the dashboard's tiles
    return ChartLook(
        background=QBrush(card),
        background_pen=QPen(_mix(window, text, 0.16), 1),
        title=QBrush(text),
        legend_labels=QBrush(text),
        axis_labels=QBrush(_mix(card, text, 0.88)),
        axis_title=QBrush(text),
        axis_line=QPen(_mix(card, text, 0.4), 1),
        grid=QPen(_mix(card, text, 0.14), 1),
        minor_grid=QPen(_mix(card, text, 0.08), 1),
        bar_border=QPen(card, 1),
        dark=True,
    )


def look_for(palette: QPalette) -> ChartLook:
    return dark_look(palette) if is_dark(palette) else light_look()


def dress(chart: QChart, look: ChartLook) -> None:
    """Give ``chart`` the colours of ``look``: frame, title, legend, axes and series."""
    chart.setBackgroundBrush(look.background)
    chart.setBackgroundPen(look.background_pen)
    chart.setTitleBrush(look.title)
    # Marker by marker: QLegend.setLabelBrush would also outline every marker in the
    # text colour, and for good (the markers then stop following their series' pens).
    for marker in chart.legend().markers():
        marker.setLabelBrush(look.legend_labels)
    for axis in chart.axes():
        axis.setLabelsBrush(look.axis_labels)
        axis.setTitleBrush(look.axis_title)
        axis.setLinePen(look.axis_line)
        axis.setGridLinePen(look.grid)
        axis.setMinorGridLinePen(look.minor_grid)
    shade = 1 if look.dark else 0
    for series in chart.series():
        if isinstance(series, QBarSeries):
            for bars in series.barSets():
                role = bars.property(_ROLE)
                if role in SERIES_COLOURS:
                    bars.setColor(SERIES_COLOURS[role][shade])
                bars.setPen(look.bar_border)
        elif isinstance(series, QLineSeries):
            role = series.property(_ROLE)
            if role in SERIES_COLOURS:
                pen = series.pen()
                pen.setColor(SERIES_COLOURS[role][shade])
                series.setPen(pen)


def _colour(item: QBarSet | QLineSeries, role: str) -> None:
    """Colour a bar set or a line for its role (light), and remember the role for :func:`dress`."""
    item.setProperty(_ROLE, role)
    light = SERIES_COLOURS[role][0]
    if isinstance(item, QBarSet):
        item.setColor(light)
    else:
        pen = item.pen()
        pen.setColor(light)
        item.setPen(pen)


def _mix(a: QColor, b: QColor, share: float) -> QColor:
    """``a`` moved ``share`` of the way towards ``b``."""
    return QColor.fromRgbF(
        a.redF() + (b.redF() - a.redF()) * share,
        a.greenF() + (b.greenF() - a.greenF()) * share,
        a.blueF() + (b.blueF() - a.blueF()) * share,
    )


class ChartView(QChartView):
    """A chart view whose chart follows the palette the view is shown in.

    The console's style sheet sets the palette when the view is polished and again
    when the theme changes; each :data:`QEvent.Type.PaletteChange` redresses the chart.
    """

    def __init__(self, chart: QChart, parent: QWidget | None = None) -> None:
        super().__init__(chart, parent)
        self._dressed_for: tuple[int, int] | None = None
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumSize(360, 240)
        self.follow_palette()

    def follow_palette(self) -> None:
        palette = self.palette()
        key = (
            palette.color(QPalette.ColorRole.Window).rgba(),
            palette.color(QPalette.ColorRole.WindowText).rgba(),
        )
        if key != self._dressed_for:
            self._dressed_for = key
            dress(self.chart(), look_for(palette))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange):
            self.follow_palette()


def chart_view(chart: QChart) -> ChartView:
    return ChartView(chart)


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
