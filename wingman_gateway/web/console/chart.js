// Messages per second, the last few minutes, drawn on a canvas of our own
// (no charting library): a line over a filled area, the peak labelled.

const POINTS = 90;

export class RateChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.samples = []; // messages per second, oldest first
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const style = getComputedStyle(canvas);
    const line = style.getPropertyValue("--chart-line").trim() || "#3b82f6";
    const fillColour = style.getPropertyValue("--chart-fill").trim() || "rgba(59,130,246,.2)";
    const grid = style.getPropertyValue("--chart-grid").trim() || "#8884";
    const text = style.getPropertyValue("--muted").trim() || "#888";
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const peak = Math.max(1, ...this.samples);
    const top = 16, bottom = height - 4;
    const x = (i) => (width * i) / (POINTS - 1);
    const y = (value) => bottom - ((bottom - top) * value) / peak;
    context.strokeStyle = grid;
    context.lineWidth = 1;
    for (const level of [0, 0.5, 1]) {
      context.beginPath();
      context.moveTo(0, Math.round(y(peak * level)) + 0.5);
      context.lineTo(width, Math.round(y(peak * level)) + 0.5);
      context.stroke();
    }
    context.fillStyle = text;
    context.font = "11px system-ui, sans-serif";
    context.fillText(`${formatRate(peak)}/s`, 4, 11);
    canvas.dataset.samples = String(this.samples.length);
    if (this.samples.length < 2) {
      context.fillText("measuring…", 4, bottom - 6);
      return;
    }
    const offset = POINTS - this.samples.length;
    context.beginPath();
    this.samples.forEach((value, i) => (i ? context.lineTo(x(offset + i), y(value)) : context.moveTo(x(offset + i), y(value))));
    context.strokeStyle = line;
    context.lineWidth = 2;
    context.stroke();
    context.lineTo(x(POINTS - 1), bottom);
    context.lineTo(x(offset), bottom);
    context.closePath();
    context.fillStyle = fillColour;
    context.fill();
  }
}

export function formatRate(rate) {
  return rate >= 10 ? rate.toFixed(0) : rate.toFixed(1);
}
