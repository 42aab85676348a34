"""The pieces of the HTML page: an inline SVG chart with axes and ticks (the data's marks drawn by the
caller) and an HTML table of plain-text cells."""

import html
import math


def tick_step(span, ticks=8):
    """1, 2 or 5 times a power of ten: at most `ticks` steps over span."""
    step = 10.0 ** math.floor(math.log10(max(span, 1e-9) / ticks))
    for factor in (1, 2, 5):
        if span / (step * factor) <= ticks:
            return step * factor
    return step * 10


def svg_chart(x_max, y_max, x_label, y_label, marks, width=1000, height=280):
    """An inline SVG with axes from 0 to x_max and y_max; marks(sx, sy) gives the data's SVG."""
    left, right, top, bottom = 64, 16, 12, 44
    x_max, y_max = max(x_max, 1e-9), max(y_max, 1e-9)

    def sx(x):
        return left + (width - left - right) * x / x_max

    def sy(y):
        return height - bottom - (height - top - bottom) * y / y_max
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
           % (width, height, width, height)]
    step = tick_step(x_max)
    for i in range(int(x_max / step) + 1):
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" '
                   'text-anchor="middle">%g</text>' % (sx(i * step), top, sx(i * step), height - bottom,
                                                      sx(i * step), height - bottom + 15, i * step))
    step = tick_step(y_max, 5)
    for i in range(int(y_max / step) + 1):
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" '
                   'text-anchor="end" dominant-baseline="middle">%g</text>' % (left, sy(i * step), width - right,
                                                                             sy(i * step), left - 5, sy(i * step), i * step))
    out.append('<path d="M%d %d V%d H%d" fill="none" stroke="#555"/>' % (left, top, height - bottom, width - right))
    out.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % ((left + width - right) // 2, height - 8,
                                                                      html.escape(x_label)))
    out.append('<text transform="translate(14 %d) rotate(-90)" text-anchor="middle">%s</text>'
               % ((top + height - bottom) // 2, html.escape(y_label)))
    out.append(marks(sx, sy))
    return "".join(out) + "</svg>"


def html_table(rows, header=None):
    """rows of (label, value...) where every cell is plain text (escaped here)."""
    head = "<tr>%s</tr>" % "".join("<th>%s</th>" % html.escape(str(h)) for h in header) if header else ""
    return "<table>%s%s</table>" % (head, "".join(
        "<tr><th>%s</th>%s</tr>" % (html.escape(str(row[0])), "".join(
            '<td class="n">%s</td>' % html.escape(str(c)) if isinstance(c, (int, float)) else
            "<td>%s</td>" % html.escape(str(c)) for c in row[1:])) for row in rows))
