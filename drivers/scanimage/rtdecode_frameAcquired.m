function rtdecode_frameAcquired(src, evt, varargin) %#ok<INUSD>
% ScanImage user function for the 'frameAcquired' event: publishes each acquired frame as an
% rtframe v1 message (topic 'frame') on a JeroMQ PUB socket. See README.md in this folder.
%
% Arguments (hUserFunctions 'Arguments' field): {port} (default 5560). Bound on all interfaces.
% Message, three frames: 'frame' | jsonencode(header) | typecast(imageData(:), 'uint8').
% ScanImage stores imageData transposed (pixelsPerLine x linesPerFrame); MATLAB memory is
% column-major, so imageData(:) already is the row-major (C-order) image of shape [lines pixels].
% rtdecode.sources.scanimage.matlab_equivalent_message builds the same bytes in Python (tested there).
%
% Call rtdecode_frameAcquired('close') to close the socket (e.g. before changing the port).

persistent ctx sock seq
if ischar(src) && strcmp(src, 'close')
    if ~isempty(sock), sock.close(); end
    if ~isempty(ctx), ctx.close(); end
    ctx = []; sock = []; seq = [];
    return
end

if isempty(sock)
    port = 5560;
    if ~isempty(varargin), port = varargin{1}; end
    ctx = org.zeromq.ZContext();
    sock = ctx.createSocket(org.zeromq.SocketType.PUB);
    sock.setSndHWM(100);
    sock.bind(sprintf('tcp://*:%d', port));
    seq = 0;
end

hSI = src.hSI;
sd = hSI.hDisplay.lastStripeData;
if isempty(sd) || isempty(sd.roiData), return; end
roi = sd.roiData{1};
t = posixtime(datetime('now', 'TimeZone', 'UTC'));
for c = 1:numel(sd.channelNumbers)
    for z = 1:numel(roi.zs)
        data = roi.imageData{c}{z};          % pixelsPerLine x linesPerFrame (transposed)
        hdr = struct('v', 1, 'seq', seq, 't', t, 'dtype', dtypeString(class(data)), ...
                     'shape', [size(data, 2) size(data, 1)], ...
                     'frameNumberAcq', sd.frameNumberAcq, 'frameTimestamp', sd.frameTimestamp, ...
                     'channel', sd.channelNumbers(c), 'plane', z);
        sock.sendMore(int8('frame'));
        sock.sendMore(typecast(unicode2native(jsonencode(hdr), 'UTF-8'), 'int8'));
        sock.send(typecast(data(:), 'int8'), 0);
        seq = seq + 1;
    end
end
end

function s = dtypeString(cls)
switch cls
    case 'int16',  s = '<i2';
    case 'uint16', s = '<u2';
    case 'int8',   s = '|i1';
    case 'uint8',  s = '|u1';
    case 'int32',  s = '<i4';
    case 'single', s = '<f4';
    otherwise, error('rtdecode_frameAcquired: imageData class %s is not supported', cls);
end
end
