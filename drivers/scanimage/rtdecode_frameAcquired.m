function rtdecode_frameAcquired(src, evt, varargin) %#ok<INUSL>
% ScanImage user function for the 'frameAcquired' event: publishes each acquired frame as rtframe v1
% messages (topic 'frame') on a JeroMQ PUB socket. See README.md in this folder.
%
% Arguments (hUserFunctions 'Arguments' field): {port} (default 5555, as configs/scanimage_2p.yaml).
% The socket is bound on all interfaces, on the first frame or by 'open':
%   rtdecode_frameAcquired('open', 5555)   open it now (before acquisition: rtdecode connects before
%                                          the first frame, instead of missing it)
%   rtdecode_frameAcquired('close')        close it (e.g. before changing the port)
%
% One message per ROI, channel and plane of hSI.hDisplay.lastStripeData, three parts:
%   'frame' | jsonencode(header) | the image bytes, C order (row-major), shape [lines pixels]
% header: v 1, seq (per socket, from 0), t (POSIX s, this PC's clock), dtype ('<i2' for int16), shape,
%         frameNumberAcq, frameTimestamp (s), channel (the ROI's channels(c)), plane (sd.zIdx),
%         roi (index into sd.roiData, from 1).
% ScanImage stores imageData{c}{z} transposed (pixels x lines) when roiData{k}.transposed is true
% (its default): MATLAB is column-major, so data(:) already is the C-order [lines pixels] image.
% When transposed is false, the image is transposed here first.
%
% Only calls that MATLAB and GNU Octave (7+) both have are used (javaMethod, plain method calls, the
% ZeroMQ constants as numbers), and the JeroMQ calls exist in JeroMQ 0.3.6 (Debian) and 0.6.
% rtdecode.sources.scanimage.matlab_equivalent_message builds the same bytes in Python.

persistent ctx sock seq
ZMQ_PUB = 1;       % org.zeromq.ZMQ.PUB (the ZeroMQ socket type number)
ZMQ_SNDMORE = 2;   % org.zeromq.ZMQ.SNDMORE
DEFAULT_PORT = 5555;

if ischar(src)
    switch src
        case 'close'
            if ~isempty(sock), sock.close(); end
            if ~isempty(ctx), ctx.term(); end
            ctx = []; sock = []; seq = [];
        case 'open'
            if isempty(sock)
                port = DEFAULT_PORT;
                if nargin > 1 && ~isempty(evt), port = evt; end
                [ctx, sock] = openSocket(port, ZMQ_PUB);
                seq = 0;
            end
        otherwise
            error('rtdecode_frameAcquired: unknown command ''%s'' (use ''open'' or ''close'')', src);
    end
    return
end

if isempty(sock)
    port = DEFAULT_PORT;
    if ~isempty(varargin), port = varargin{1}; end
    [ctx, sock] = openSocket(port, ZMQ_PUB);
    seq = 0;
end

hSI = src.hSI;
sd = hSI.hDisplay.lastStripeData;
if isempty(sd) || isempty(sd.roiData), return; end
t = double(javaMethod('currentTimeMillis', 'java.lang.System')) / 1000;
zIdx = 1;
if hasProp(sd, 'zIdx') && ~isempty(sd.zIdx), zIdx = double(sd.zIdx); end
for r = 1:numel(sd.roiData)
    roi = sd.roiData{r};
    transposed = true;   % ScanImage's RoiData default
    if hasProp(roi, 'transposed') && ~isempty(roi.transposed), transposed = logical(roi.transposed); end
    channels = sd.channelNumbers;
    if hasProp(roi, 'channels') && ~isempty(roi.channels), channels = roi.channels; end
    for c = 1:numel(roi.imageData)
        for z = 1:numel(roi.imageData{c})
            data = roi.imageData{c}{z};
            if isempty(data), continue; end
            if transposed                          % pixelsPerLine x linesPerFrame
                shape = [size(data, 2) size(data, 1)];
            else                                   % linesPerFrame x pixelsPerLine
                shape = [size(data, 1) size(data, 2)];
                data = data.';
            end
            hdr = struct('v', 1, 'seq', seq, 't', t, 'dtype', dtypeString(class(data)), ...
                         'shape', shape, 'frameNumberAcq', double(sd.frameNumberAcq), ...
                         'frameTimestamp', double(sd.frameTimestamp), 'channel', double(channels(c)), ...
                         'plane', zIdx + z - 1, 'roi', r);
            sock.send(int8('frame'), ZMQ_SNDMORE);
            sock.send(typecast(unicode2native(jsonencode(hdr), 'UTF-8'), 'int8'), ZMQ_SNDMORE);
            sock.send(typecast(data(:), 'int8'), 0);
            seq = seq + 1;
        end
    end
end
end

function [ctx, sock] = openSocket(port, type)
ctx = javaMethod('context', 'org.zeromq.ZMQ', 1);
sock = ctx.socket(type);
sock.setSndHWM(100);       % messages; past that, frames are dropped (seen as seq gaps by rtdecode)
sock.setLinger(1000);      % ms: 'close' never hangs on an absent subscriber
sock.bind(sprintf('tcp://*:%d', port));
end

function tf = hasProp(obj, name)
% true if the object or struct has that property or field (ScanImage versions differ).
if isstruct(obj)
    tf = isfield(obj, name);
else
    tf = isprop(obj, name);
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
